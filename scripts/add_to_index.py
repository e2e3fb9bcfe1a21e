"""Snakemake adapter: a genome's vectors (or a pack's) added to a copy of the trained index."""
from genembed.search.index import add_part
from genembed.data.layout import group_shards
from genembed.run.workflow import run_logged

run_logged(snakemake.log[0], lambda: add_part(
    snakemake.input.trained, group_shards(snakemake.input.shards, dict.fromkeys(snakemake.params.genomes, {})),
    snakemake.output.part))
