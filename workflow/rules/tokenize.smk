# Token ids per shard: flat int32 tokens + int64 offsets (.npy, memory-mappable).


rule tokenize:
    input:
        windows="results/windows/{genome}/{shard}.parquet",
        fasta="results/genomes/{genome}/genome.fa.gz",
        model="results/model/model.json",
    output:
        tokens="results/tokens/{genome}/{shard}.tokens.npy",
        offsets="results/tokens/{genome}/{shard}.offsets.npy",
    params:
        tokenizer=config["tokenizer"],
        model=config["model"],
    log:
        "logs/tokenize/{genome}/{shard}.log",
    benchmark:
        "benchmarks/logs/tokenize/{genome}/{shard}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=2000,
    script:
        "../../scripts/tokenize_shard.py"
