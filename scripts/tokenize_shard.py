"""Snakemake adapter: token ids for one shard (both strands when embedding averages them)."""
import json
from pathlib import Path

from genembed.models import ModelSpec, load_tokenizer
from genembed.tokenize import TokenizerSpec, make_tokenizer, tokenize_shard
from genembed.workflow import run_logged


def step():
    model = json.loads(Path(snakemake.input.model).read_text())
    spec = ModelSpec.from_config({**snakemake.params.model, "path": model["folder"]})
    tokenizer = make_tokenizer(TokenizerSpec.parse(model["tokenizer"]), load_tokenizer(Path(model["folder"]), spec))
    tokenize_shard(snakemake.input.windows, snakemake.input.fasta, tokenizer, model["max_tokens"],
                   snakemake.output.tokens, snakemake.output.offsets, snakemake.params.strands)


run_logged(snakemake.log[0], step)
