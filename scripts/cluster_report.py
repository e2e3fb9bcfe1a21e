"""Snakemake adapter: clustering report."""
from pathlib import Path

from genembed.data.layout import group_shards
from genembed.reports.clusters import ClusterSettings, cluster_report
from genembed.run.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: cluster_report(
    group_shards(snakemake.input.shards, p.sheet), Path(snakemake.output.html).parent,
    ClusterSettings(**p.clusters, upstream=p.upstream, downstream=p.downstream, seed=p.seed)))
