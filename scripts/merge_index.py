"""Snakemake adapter: join the genomes' parts into the index, its id table and its manifest, with a
traced query encoder beside them (fast query start)."""
from genembed.search.index import IndexSettings
from genembed.search.build import merge_parts
from genembed.data.layout import group_shards
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: merge_parts(
    snakemake.input.trained, snakemake.input.parts, group_shards(snakemake.input.shards, dict.fromkeys(p.genomes, {})),
    snakemake.output[0], RunPlan.read(snakemake.input.plan), IndexSettings.from_config(p.index, p.seed)))
