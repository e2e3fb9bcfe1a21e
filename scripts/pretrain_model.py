"""Snakemake adapter: train genembed's convolutional encoder contrastively on the configured genomes."""
from genembed.encode.tune import TuneConfig, tune
from genembed.run.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: tune(snakemake.input.fastas, snakemake.output[0], TuneConfig(**p.settings, seed=p.seed)))
