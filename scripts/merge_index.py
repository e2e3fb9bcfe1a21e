"""Snakemake adapter: join the genomes' parts into the index, its id table and its manifest, and keep
a traced query encoder beside them (fast query start)."""
import json
from pathlib import Path

from genembed.export import export_query_model
from genembed.index import IndexSettings, merge_parts
from genembed.workflow import run_logged


def step():
    model = json.loads(Path(snakemake.input.model).read_text())
    out = Path(snakemake.output.index).parent
    manifest = merge_parts(snakemake.input.trained, snakemake.input.parts, sorted(snakemake.input.windows), out, model,
                           snakemake.params.genomes, IndexSettings.from_config(snakemake.params.index, snakemake.params.seed),
                           sorted(snakemake.input.shards))
    export_query_model(out, manifest)


run_logged(snakemake.log[0], step)
