"""Snakemake adapter: token ids for one shard (both strands when embedding averages them)."""
from genembed.run.pipeline import tokenize_stage
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

run_logged(snakemake.log[0], lambda: tokenize_stage(RunPlan.read(snakemake.input.plan), snakemake.input.windows,
                                                    snakemake.input.fasta, snakemake.output.tokens, snakemake.output.offsets))
