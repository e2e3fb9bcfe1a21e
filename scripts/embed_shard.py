"""Snakemake adapter: embed one shard into HDF5, and its part of the dense promoter track when asked."""
from pathlib import Path

from genembed.data.layout import ShardFiles
from genembed.run.pipeline import embed_shard_track, embed_stage
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged
from genembed.encode.embed import Embedder


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    plan = RunPlan.read(snakemake.input.plan)
    i, o = snakemake.input, snakemake.output
    files = ShardFiles(Path(i.windows), Path(i.tokens), Path(i.offsets), Path(o.embeddings))
    embedder = Embedder.for_plan(plan, **snakemake.params.runtime)
    embed_stage(plan, [files], embedder)
    if snakemake.params.track_step:
        embed_shard_track(plan, embedder, i.fasta, snakemake.wildcards.shard, snakemake.params.track_step, o.track)


run_logged(snakemake.log[0], step)
