"""Snakemake adapter: the stranded promoter model's probabilities in one shard's span, or of a pack's genomes."""
from genembed.encode.plan import RunPlan
from genembed.reports.promoters import score_promoter_span
from genembed.run.workflow import run_logged


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    i, w = snakemake.input, snakemake.wildcards
    if "shard" in w.keys():  # one shard of a sharded genome
        score_promoter_span(i.record, i.weights, {w.genome: i.fasta}, snakemake.output[0], RunPlan.read(i.plan), w.shard)
    else:  # a pack
        score_promoter_span(i.record, i.weights, dict(zip(snakemake.params.genomes, i.fastas)), snakemake.output[0])


run_logged(snakemake.log[0], step)
