# The FAISS index (cosine) in three steps, so that a new genome costs only its own work: the index is
# trained once on the genomes present then (and retrained only when the collection outgrows it),
# each genome's vectors are added in its own job, and a merge joins the parts with the id table and
# the manifest.


rule train_index:
    input:
        shards=train_inputs("results/embeddings/{genome}/{shard}.h5"),
        windows=train_inputs("results/windows/{genome}/{shard}.parquet"),
    output:
        index=TRAINED,
        info=TRAINED_INFO,
    params:
        index={k: config["index"][k] for k in ("type", "factory", "train_size")},  # query knobs do not retrain
        seed=config["seed"],
    log:
        "logs/index/train.log",
    benchmark:
        "benchmarks/logs/train_index.tsv"
    conda:
        "../../envs/gpu.yaml"  # faiss-gpu: trains on a GPU when the job has one (index.gpu), else on the CPU
    resources:
        mem_mb=grow(16000),
        runtime=grow(120),
        gpu=1 if config["index"]["gpu"] else 0,
    script:
        "../../scripts/train_index.py"


rule add_to_index:
    input:
        trained=TRAINED,
        info=TRAINED_INFO,
        shards=genome_shards("results/embeddings/{genome}/{shard}.h5"),
        windows=genome_shards("results/windows/{genome}/{shard}.parquet"),
    output:
        part="results/index/parts/{genome}.faiss",
        info="results/index/parts/{genome}.json",
    log:
        "logs/index/add/{genome}.log",
    benchmark:
        "benchmarks/logs/add_to_index/{genome}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(8000),
        runtime=grow(60),
    script:
        "../../scripts/add_to_index.py"


rule merge_index:
    input:
        trained=TRAINED,
        info=TRAINED_INFO,
        parts=expand("results/index/parts/{genome}.faiss", genome=SHEET),
        windows=all_shards("results/windows/{genome}/{shard}.parquet"),
        shards=all_shards("results/embeddings/{genome}/{shard}.h5"),
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
        "logs/index/merge.log",
    benchmark:
        "benchmarks/logs/merge_index.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(16000),
        runtime=grow(120),
    script:
        "../../scripts/merge_index.py"
