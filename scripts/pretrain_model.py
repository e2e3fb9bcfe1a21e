"""Snakemake adapter: train the small default DNA BERT on the configured genomes."""
from genembed.pretrain import PretrainConfig, pretrain
from genembed.workflow import run_logged

settings = {k: v for k, v in snakemake.params.settings.items() if k != "enabled"}
cfg = PretrainConfig(**settings, seed=snakemake.params.seed)
run_logged(snakemake.log[0], lambda: pretrain(snakemake.input.fastas, snakemake.output[0], cfg))
