"""Snakemake adapter: promoter-prediction report."""
from pathlib import Path

from genembed.reports.data import group_inputs
from genembed.reports.promoters import PromoterSettings, promoter_report
from genembed.workflow import run_logged

p = snakemake.params.promoters
settings = PromoterSettings(upstream=p["upstream"], downstream=p["downstream"], test_fraction=p["test_fraction"],
                            split=p["split"], kmer=p["kmer"], max_train=p["max_train"], seed=snakemake.params.seed)
fastas = {g: f for g, f in zip(snakemake.params.sheet, snakemake.input.genomes)}
genomes = group_inputs(snakemake.params.sheet, fastas, snakemake.input.windows, snakemake.input.shards)
run_logged(snakemake.log[0], lambda: promoter_report(genomes, Path(snakemake.output.html).parent, settings,
                                                     snakemake.params.stride))
