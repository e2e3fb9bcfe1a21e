"""Snakemake adapter: promoter-prediction report (tracks embedded by the packs and the shard jobs; a dense scan with the run's model where a genome has none)."""
from pathlib import Path

from genembed.layout import group_shards, with_tracks
from genembed.plan import RunPlan
from genembed.reports.promoters import PromoterSettings, run_promoter_report
from genembed.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: run_promoter_report(
    with_tracks(group_shards(snakemake.input.shards, p.sheet), snakemake.input.packs), Path(snakemake.output.html).parent,
    PromoterSettings(**p.promoters, seed=p.seed), RunPlan.read(snakemake.input.plan)))
