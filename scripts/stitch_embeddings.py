"""Snakemake adapter: a genome's per-shard embeddings as one virtual HDF5 file."""
from genembed.store import stitch
from genembed.workflow import run_logged

run_logged(snakemake.log[0], lambda: stitch(sorted(snakemake.input), snakemake.output[0]))
