"""Snakemake adapter: the embeddings against 4-mer counts and GC on sampled windows (their stored vectors searched)."""
from pathlib import Path

from genembed.evaluate import EvalSettings, evaluate_model
from genembed.layout import group_shards
from genembed.plan import RunPlan
from genembed.workflow import run_logged

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], lambda: evaluate_model(
    {Path(f).parent.name: f for f in i.genomes}, RunPlan.read(i.plan), Path(snakemake.output.html).parent,
    EvalSettings(**p.evaluate, seed=p.seed), Path(i.promoters[0]).parent if i.promoters else None,
    group_shards(i.shards, p.sheet)))
