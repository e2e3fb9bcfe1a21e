"""Snakemake adapter: token ids for one shard (both strands when embedding averages them)."""
import json
from pathlib import Path

from genembed.plan import plan_tokenizer
from genembed.tokenize import tokenize_shard
from genembed.workflow import run_logged


def step():
    plan = json.loads(Path(snakemake.input.model).read_text())
    tokenize_shard(snakemake.input.windows, snakemake.input.fasta, plan_tokenizer(plan, snakemake.params.model),
                   plan["max_tokens"], snakemake.output.tokens, snakemake.output.offsets, snakemake.params.strands)


run_logged(snakemake.log[0], step)
