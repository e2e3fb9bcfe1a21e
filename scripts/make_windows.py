"""Snakemake adapter: one shard of genome windows as Parquet."""
from genembed.windows import write_shard_windows
from genembed.workflow import run_logged, window_spec

run_logged(snakemake.log[0], lambda: write_shard_windows(
    snakemake.wildcards.genome, snakemake.input.fasta, window_spec({"windows": snakemake.params.windows}),
    int(snakemake.wildcards.shard), snakemake.output[0],
))
