"""Snakemake adapter: embed one shard into HDF5."""
from pathlib import Path

from genembed.layout import ShardFiles
from genembed.pipeline import embed_stage
from genembed.plan import RunPlan
from genembed.workflow import run_logged


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    plan = RunPlan.read(snakemake.input.plan)
    i = snakemake.input
    files = ShardFiles(Path(i.windows), Path(i.tokens), Path(i.offsets), Path(snakemake.output[0]))
    embed_stage(plan, [files], plan.embedder(**snakemake.params.runtime))


run_logged(snakemake.log[0], step)
