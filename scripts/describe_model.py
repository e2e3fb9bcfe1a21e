"""Snakemake adapter: resolve and fingerprint the model, and plan the windows that fit it."""
from genembed.io import write_json
from genembed.models import ModelSpec
from genembed.plan import plan_run
from genembed.tokenize import TokenizerSpec
from genembed.workflow import run_logged

spec = ModelSpec.from_config({**snakemake.params.model, "path": snakemake.params.folder})
run_logged(snakemake.log[0], lambda: write_json(snakemake.output[0], plan_run(
    spec, TokenizerSpec.from_config(snakemake.params.tokenizer), snakemake.params.windows)))
