"""Snakemake adapter: the evaluate report of the measured tables, with the promoter report's metrics."""
from pathlib import Path

from genembed.reports.evaluate import EvalSettings, read_measures, report_model
from genembed.encode.plan import RunPlan
from genembed.run.workflow import run_logged

i, p = snakemake.input, snakemake.params
run_logged(snakemake.log[0], lambda: report_model(
    *read_measures(i.measures, i.comparison), RunPlan.read(i.plan), EvalSettings(**p.evaluate, seed=p.seed), p.genomes,
    Path(snakemake.output.html).parent, Path(i.promoters[0]).parent if i.promoters else None))
