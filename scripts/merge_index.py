"""Snakemake adapter: join the genomes' parts into the index, its id table and its manifest."""
import json
from pathlib import Path

from genembed.index import IndexSettings, merge_parts
from genembed.workflow import run_logged

model = json.loads(Path(snakemake.input.model).read_text())
run_logged(snakemake.log[0], lambda: merge_parts(
    snakemake.input.trained, snakemake.input.parts, sorted(snakemake.input.windows),
    Path(snakemake.output.index).parent, model, snakemake.params.genomes,
    IndexSettings.from_config(snakemake.params.index, snakemake.params.seed)))
