"""Snakemake adapter: train the (empty) FAISS index on a sample of the genomes present now."""
from genembed.index import IndexSettings, train_index
from genembed.workflow import run_logged

genomes = sorted({p.split("/")[-2] for p in snakemake.input.windows})
run_logged(snakemake.log[0], lambda: train_index(
    sorted(snakemake.input.shards), sorted(snakemake.input.windows), snakemake.output.index,
    IndexSettings.from_config(snakemake.params.index, snakemake.params.seed), genomes))
