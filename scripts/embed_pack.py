"""Snakemake adapter: a pack of small genomes through every stage in one job (one model load)."""
from genembed.run.pipeline import embed_pack
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged
from genembed.encode.embed import Embedder


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    plan = RunPlan.read(snakemake.input.plan)
    embed_pack(plan, dict(zip(snakemake.params.genomes, snakemake.input.fastas)), snakemake.output[0],
               Embedder.for_plan(plan, **snakemake.params.runtime), snakemake.params.track_step)


run_logged(snakemake.log[0], step)
