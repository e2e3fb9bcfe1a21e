"""Snakemake adapter: one shard of genome windows as Parquet (windows the model cannot take dropped)."""
import json
from pathlib import Path

from genembed.genome import read_fai
from genembed.plan import plan_tokenizer
from genembed.tokenize import token_fit
from genembed.windows import WindowSpec, write_shard_windows
from genembed.workflow import run_logged


def step():
    plan = json.loads(Path(snakemake.input.plan).read_text())
    fits = token_fit(plan_tokenizer(plan, snakemake.params.model), plan["max_tokens"], snakemake.params.strands)
    write_shard_windows(snakemake.wildcards.genome, snakemake.input.fasta, WindowSpec.from_config(plan["windows"], read_fai(snakemake.input.fai)),
                        int(snakemake.wildcards.shard), snakemake.output[0], fits)


run_logged(snakemake.log[0], step)
