"""Snakemake adapter: one genome's vectors added to a copy of the trained index."""
from genembed.index import add_part
from genembed.workflow import run_logged

run_logged(snakemake.log[0], lambda: add_part(snakemake.input.trained, sorted(snakemake.input.shards),
                                              sorted(snakemake.input.windows), snakemake.output.part))
