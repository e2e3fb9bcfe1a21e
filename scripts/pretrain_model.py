"""Snakemake adapter: train the small default DNA BERT on the configured genomes."""
from genembed.pretrain import PretrainConfig, pretrain
from genembed.workflow import run_logged

s = snakemake.params.settings
cfg = PretrainConfig(
    hidden_size=s["hidden_size"], layers=s["layers"], heads=s["heads"], intermediate_size=4 * s["hidden_size"],
    seq_bp=s["seq_bp"], batch_size=s["batch_size"], steps=s["steps"], max_minutes=s["max_minutes"],
    seed=snakemake.params.seed,
)
run_logged(snakemake.log[0], lambda: pretrain(snakemake.input.fastas, snakemake.output[0], cfg))
