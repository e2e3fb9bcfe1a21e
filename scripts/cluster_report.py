"""Snakemake adapter: clustering report."""
from pathlib import Path

from genembed.reports.clusters import ClusterSettings, cluster_report
from genembed.reports.data import group_inputs
from genembed.workflow import run_logged

p = snakemake.params.promoters
settings = ClusterSettings(**snakemake.params.clusters, upstream=p["upstream"], downstream=p["downstream"],
                           seed=snakemake.params.seed)
genomes = group_inputs(snakemake.params.sheet, snakemake.params.fastas, snakemake.input.windows, snakemake.input.shards)
run_logged(snakemake.log[0], lambda: cluster_report(genomes, Path(snakemake.output.html).parent, settings))
