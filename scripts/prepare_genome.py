"""Snakemake adapter: validate and index one genome FASTA."""
from genembed.genome import prepare_fasta
from genembed.workflow import run_logged

run_logged(snakemake.log[0], lambda: prepare_fasta(snakemake.input.fasta, snakemake.output.fasta))
