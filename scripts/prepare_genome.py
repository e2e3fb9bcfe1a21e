"""Snakemake adapter: validate and index one genome FASTA."""
from genembed.data.genome import prepare_fasta
from genembed.run.workflow import run_logged

run_logged(snakemake.log[0], lambda: prepare_fasta(snakemake.input.fasta, snakemake.output.fasta))
