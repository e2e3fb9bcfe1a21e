# One shard of windows per job: ids, coordinates, GC and N fractions, as Parquet.


rule windows:
    input:
        fasta="results/genomes/{genome}/genome.fa.gz",
        fai="results/genomes/{genome}/genome.fa.gz.fai",
        plan=MODEL_JSON,
    output:
        "results/windows/{genome}/{shard}.parquet",
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
