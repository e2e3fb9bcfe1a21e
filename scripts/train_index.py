"""Snakemake adapter: train the (empty) FAISS index on a sample of the genomes present now."""
from genembed.search.index import IndexSettings, train_index
from genembed.data.layout import group_shards
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

run_logged(snakemake.log[0], lambda: train_index(
    group_shards(snakemake.input.shards), snakemake.output.index,
    IndexSettings.from_config(snakemake.params.index, snakemake.params.seed), RunPlan.read(snakemake.input.plan)))
