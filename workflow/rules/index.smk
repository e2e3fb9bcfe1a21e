# One FAISS index over all genomes (cosine), with an id table and a manifest.


rule build_index:
    input:
        shards=all_shards("results/embeddings/{genome}/{shard}.h5"),
        windows=all_shards("results/windows/{genome}/{shard}.parquet"),
        genomes=lambda wc: list(prepared_fastas(wc).values()),
        model=MODEL_JSON,
    output:
        index="results/index/index.faiss",
        table="results/index/windows.parquet",
        manifest="results/index/manifest.json",
    params:
        index=config["index"],
        genomes=prepared_fastas,
        seed=config["seed"],
    log:
        "logs/build_index.log",
    benchmark:
        "benchmarks/logs/build_index.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=16000,
    script:
        "../../scripts/build_index.py"
