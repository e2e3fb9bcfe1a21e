# Token ids per shard: flat int32 tokens + int64 offsets (.npy, memory-mappable); with
# embed.strands: average, the reverse-complement rows follow the forward rows.


rule tokenize:
    input:
        windows="results/windows/{genome}/{shard}.parquet",
        fasta="results/genomes/{genome}/genome.fa.gz",
        model=MODEL_JSON,
    output:
        tokens="results/tokens/{genome}/{shard}.tokens.npy",
        offsets="results/tokens/{genome}/{shard}.offsets.npy",
    params:
        tokenizer=config["tokenizer"],
        model=config["model"],
        strands=config["embed"]["strands"],
    log:
        "logs/tokenize/{genome}/{shard}.log",
    benchmark:
        "benchmarks/logs/tokenize/{genome}/{shard}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(2000),
        runtime=grow(20),
    script:
        "../../scripts/tokenize_shard.py"
