"""Snakemake adapter: one genome's vectors added to a copy of the trained index."""
from genembed.index import add_part
from genembed.layout import group_shards
from genembed.workflow import run_logged

run_logged(snakemake.log[0], lambda: add_part(
    snakemake.input.trained, group_shards(snakemake.input.shards, {snakemake.wildcards.genome: {}})[0],
    snakemake.output.part))
