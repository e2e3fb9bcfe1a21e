"""Snakemake adapter: embed one shard into HDF5."""
import json

from genembed.embed import EmbedSettings, Embedder, embed_shard
from genembed.models import ModelSpec
from genembed.workflow import run_logged


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    model = json.loads(open(snakemake.input.model).read())
    spec = ModelSpec.from_config({**snakemake.params.model, "path": model["folder"]})
    embedder = Embedder(spec, EmbedSettings.from_config(snakemake.params.embed))
    w = model["windows"]
    embed_shard(snakemake.input.windows, snakemake.input.tokens, snakemake.input.offsets, embedder, model,
                model["tokenizer"], w["size"], w["stride"], snakemake.output[0])


run_logged(snakemake.log[0], step)
