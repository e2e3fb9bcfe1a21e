"""Snakemake adapter: clustering report."""
from pathlib import Path

from genembed.reports.clusters import ClusterSettings, cluster_report
from genembed.reports.data import group_inputs
from genembed.workflow import run_logged

c, p = snakemake.params.clusters, snakemake.params.promoters
settings = ClusterSettings(k=c["k"], kmeans_sample=c["kmeans_sample"], umap_sample=c["umap_sample"],
                           upstream=p["upstream"], downstream=p["downstream"], seed=snakemake.params.seed)
fastas = {g: f for g, f in zip(snakemake.params.sheet, snakemake.input.genomes)}
genomes = group_inputs(snakemake.params.sheet, fastas, snakemake.input.windows, snakemake.input.shards)
run_logged(snakemake.log[0], lambda: cluster_report(genomes, Path(snakemake.output.html).parent, settings))
