"""Snakemake adapter: the embeddings against k-mer counts and GC on sampled windows (their stored vectors searched)."""
from pathlib import Path

from genembed.reports.evaluate import EvalSettings, measure_model, write_measures
from genembed.data.layout import group_shards
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

i, o, p = snakemake.input, snakemake.output, snakemake.params
run_logged(snakemake.log[0], lambda: write_measures(*measure_model(
    {Path(f).parent.name: f for f in i.genomes}, RunPlan.read(i.plan), EvalSettings(**p.evaluate, seed=p.seed),
    group_shards(i.shards, p.sheet)), o.measures, o.comparison))
