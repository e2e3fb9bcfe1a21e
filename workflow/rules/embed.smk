# One embedding job per shard, on a GPU where there is one (CPU otherwise): HDF5 float16.


rule embed:
    input:
        windows="results/windows/{genome}/{shard}.parquet",
        tokens="results/tokens/{genome}/{shard}.tokens.npy",
        offsets="results/tokens/{genome}/{shard}.offsets.npy",
        model=MODEL_JSON,
    output:
        "results/embeddings/{genome}/{shard}.h5",
    params:
        embed=config["embed"],
        model=config["model"],
    log:
        "logs/embed/{genome}/{shard}.log",
    benchmark:
        "benchmarks/logs/embed/{genome}/{shard}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=grow(8000),
        runtime=grow(120),
    script:
        "../../scripts/embed_shard.py"
