"""Snakemake adapter: one shard of genome windows as Parquet."""
from genembed.windows import WindowSpec, write_shard_windows
from genembed.workflow import run_logged

run_logged(snakemake.log[0], lambda: write_shard_windows(
    snakemake.wildcards.genome, snakemake.input.fasta, WindowSpec.from_config(snakemake.params.windows),
    int(snakemake.wildcards.shard), snakemake.output[0],
))
