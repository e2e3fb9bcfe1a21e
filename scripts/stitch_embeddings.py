"""Snakemake adapter: a genome's per-shard embeddings as one virtual HDF5 file, with its genome and contig vectors."""
from genembed.data.store import stitch
from genembed.run.workflow import run_logged

i = snakemake.input
run_logged(snakemake.log[0], lambda: stitch(list(i.shards), snakemake.output[0], list(i.windows), snakemake.wildcards.genome))
