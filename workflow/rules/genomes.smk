# Validate each genome FASTA (plain, gzip or bgzip) into an indexed bgzip copy. A checkpoint:
# its .fai and the model's window plan (describe_model) fix how many shards (embedding jobs) the genome has.


checkpoint prepare_genome:
    wildcard_constraints:
        genome=one_of(SHARDED),  # packed genomes come from their pack (embed_pack)
    input:
        fasta=genome_fasta,
    output:
        fasta=GENOME,
        fai=f"{GENOME}.fai",
        gzi=f"{GENOME}.gzi",
    log:
        "logs/prepare_genome/{genome}.log",
    benchmark:
        "benchmarks/logs/prepare_genome/{genome}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(2000),
        runtime=grow(60),
    script:
        "../../scripts/prepare_genome.py"
