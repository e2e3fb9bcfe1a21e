"""Snakemake adapter: promoter-prediction report (tracks embedded by the packs and the shard jobs, the stranded
model's scores by its own jobs; a dense scan with the run's model where a genome has no track)."""
from pathlib import Path

from genembed.data.layout import group_shards, with_tracks
from genembed.encode.plan import RunPlan
from genembed.reports.promoters import PromoterSettings, StrandedInputs, run_promoter_report
from genembed.run.workflow import run_logged

p, i = snakemake.params, snakemake.input
stranded = StrandedInputs(Path(i.promoter_model[1]), [Path(f) for f in i.promoter_scores]) if i.promoter_model else None
run_logged(snakemake.log[0], lambda: run_promoter_report(
    with_tracks(group_shards(i.shards, p.sheet), i.packs), Path(snakemake.output.html).parent,
    PromoterSettings(**p.promoters, seed=p.seed), RunPlan.read(i.plan), stranded))
