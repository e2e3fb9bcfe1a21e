"""Snakemake adapter: promoter-prediction report."""
from pathlib import Path

from genembed.reports.data import group_inputs
from genembed.reports.promoters import PromoterSettings, promoter_report
from genembed.store import read_attrs
from genembed.workflow import run_logged

settings = PromoterSettings(**snakemake.params.promoters, seed=snakemake.params.seed)
genomes = group_inputs(snakemake.params.sheet, snakemake.params.fastas, snakemake.input.windows, snakemake.input.shards)
stride = int(read_attrs(snakemake.input.shards[0])["window_stride"])
run_logged(snakemake.log[0], lambda: promoter_report(genomes, Path(snakemake.output.html).parent, settings, stride))
