"""Snakemake adapter: the embeddings against 4-mer counts and GC content on sampled windows."""
from pathlib import Path

from genembed.evaluate import EvalSettings, evaluate_model
from genembed.plan import RunPlan
from genembed.workflow import run_logged

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], lambda: evaluate_model(
    {Path(f).parent.name: f for f in i.genomes}, RunPlan.read(i.plan), Path(snakemake.output.html).parent,
    EvalSettings(**p.evaluate, seed=p.seed), Path(i.promoters[0]).parent if i.promoters else None))
