"""Snakemake adapter: train the supervised, stranded promoter model on the run's starts."""
from genembed.data.layout import group_shards
from genembed.reports.promoters import PromoterSettings, train_promoter_model
from genembed.run.workflow import run_logged


def step():
    import torch

    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    train_promoter_model(group_shards([], p.sheet), PromoterSettings(**p.promoters, seed=p.seed),
                         snakemake.output.weights, snakemake.output.record)


run_logged(snakemake.log[0], step)
