"""Snakemake adapter: one shard of genome windows as Parquet."""
import json
from pathlib import Path

from genembed.windows import WindowSpec, write_shard_windows
from genembed.workflow import run_logged

plan = json.loads(Path(snakemake.input.plan).read_text())
run_logged(snakemake.log[0], lambda: write_shard_windows(
    snakemake.wildcards.genome, snakemake.input.fasta, WindowSpec.from_config(plan["windows"]),
    int(snakemake.wildcards.shard), snakemake.output[0],
))
