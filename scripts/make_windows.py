"""Snakemake adapter: one shard of genome windows as Parquet (windows the model cannot take dropped)."""
from genembed.run.pipeline import window_stage
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

run_logged(snakemake.log[0], lambda: window_stage(RunPlan.read(snakemake.input.plan), snakemake.wildcards.genome,
                                                  snakemake.input.fasta, int(snakemake.wildcards.shard), snakemake.output[0]))
