# One shard of windows per job: ids, coordinates, GC and N fractions, as Parquet. Windows over the
# N limit, or whose ambiguity codes make more tokens than the model takes, are dropped.


rule windows:
    wildcard_constraints:
        genome=one_of(SHARDED),  # packed genomes come from their pack (embed_pack)
    input:
        fasta=GENOME,
        fai=f"{GENOME}.fai",
        plan=PLAN,
    output:
        WINDOWS,
    log:
        "logs/windows/{genome}/{shard}.log",
    benchmark:
        "benchmarks/logs/windows/{genome}/{shard}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(1000),
        runtime=grow(10),
    script:
        "../../scripts/make_windows.py"
