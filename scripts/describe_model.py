"""Snakemake adapter: resolve and fingerprint the model once for every downstream job."""
from genembed.io import write_json
from genembed.models import ModelSpec, describe
from genembed.workflow import run_logged

spec = ModelSpec.from_config({**snakemake.params.model, "path": snakemake.params.folder})
run_logged(snakemake.log[0], lambda: write_json(snakemake.output[0], describe(spec)))
