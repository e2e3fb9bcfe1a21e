"""Snakemake adapter: FAISS index over all shards."""
import json

from genembed.index import IndexSettings, build_index
from genembed.workflow import run_logged


def step():
    shards, windows = sorted(snakemake.input.shards), sorted(snakemake.input.windows)
    model = json.loads(open(snakemake.input.model).read())
    build_index(shards, windows, snakemake.output.index.rsplit("/", 1)[0], model, snakemake.params.genomes,
                IndexSettings.from_config(snakemake.params.index, snakemake.params.seed))


run_logged(snakemake.log[0], step)
