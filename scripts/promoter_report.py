"""Snakemake adapter: promoter-prediction report (tracks from a dense scan with the run's model)."""
import json
from pathlib import Path

from genembed.plan import plan_embedder
from genembed.reports.data import group_inputs
from genembed.reports.promoters import PromoterSettings, promoter_report
from genembed.store import read_attrs
from genembed.workflow import run_logged


def main() -> None:
    settings = PromoterSettings(**snakemake.params.promoters, max_n_fraction=snakemake.params.max_n_fraction,
                                seed=snakemake.params.seed)
    genomes = group_inputs(snakemake.params.sheet, snakemake.params.fastas, snakemake.input.windows,
                           snakemake.input.shards)
    attrs = read_attrs(snakemake.input.shards[0])
    stride = int(attrs["window_stride"])
    embed = None
    if settings.track_step < stride:
        plan = json.loads(Path(snakemake.input.plan).read_text())
        embed = plan_embedder(plan, snakemake.params.model, snakemake.params.embed)
    promoter_report(genomes, Path(snakemake.output.html).parent, settings, stride, embed, int(attrs["window_size"]))


run_logged(snakemake.log[0], main)
