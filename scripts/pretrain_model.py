"""Snakemake adapter: train genembed's convolutional encoder contrastively on the configured genomes."""
from genembed.tune import TuneConfig, tune
from genembed.workflow import run_logged

settings = {k: v for k, v in snakemake.params.settings.items() if k != "enabled"}
cfg = TuneConfig(**settings, seed=snakemake.params.seed)
run_logged(snakemake.log[0], lambda: tune(snakemake.input.fastas, snakemake.output[0], cfg))
