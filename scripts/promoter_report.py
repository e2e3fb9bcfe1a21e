"""Snakemake adapter: promoter-prediction report (tracks from a dense scan with the run's model)."""
from pathlib import Path

from genembed.layout import group_shards
from genembed.plan import RunPlan
from genembed.reports.promoters import PromoterSettings, run_promoter_report
from genembed.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: run_promoter_report(
    group_shards(snakemake.input.shards, p.sheet), Path(snakemake.output.html).parent,
    PromoterSettings(**p.promoters, seed=p.seed), RunPlan.read(snakemake.input.plan)))
