# The FAISS index (cosine) in three steps, so that a new genome costs only its own work: the index is
# trained once on the genomes present then (and retrained only when the collection outgrows it),
# each genome's vectors are added in its own job, and a merge joins the parts with the id table and
# the manifest.


# index.gpu: true names the job train_index_gpu (the SLURM profile sends it to the GPU partition) and
# gives it envs/gpu.yaml (faiss-gpu); otherwise it is train_index, on the CPU with envs/cpu.yaml: a
# node without an NVIDIA driver never loads faiss-gpu.
rule:
    name:
        "train_index_gpu" if config["index"]["gpu"] else "train_index"
    input:
        shards=shard_files(EMBEDDINGS, train_genomes),
        windows=shard_files(WINDOWS, train_genomes),
        plan=PLAN,
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
        "../../envs/gpu.yaml" if config["index"]["gpu"] else "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(16000),
        runtime=grow(120),
        gpu=1 if config["index"]["gpu"] else 0,
    script:
        "../../scripts/train_index.py"


rule add_to_index:
    wildcard_constraints:
        genome=one_of(SHARDED),
    input:
        trained=TRAINED,
        info=TRAINED_INFO,
        shards=shard_files(EMBEDDINGS, job_genome),
        windows=shard_files(WINDOWS, job_genome),
    output:
        part=PART,
        info=PART_INFO,
        sequences=PART_SEQUENCES,
    params:
        genomes=job_genome,
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


use rule add_to_index as add_pack with:
    input:
        trained=TRAINED,
        info=TRAINED_INFO,
        shards=shard_files(EMBEDDINGS, pack_genomes),
        windows=shard_files(WINDOWS, pack_genomes),
    output:
        part=PACK_PART,
        info=PACK_PART_INFO,
        sequences=PACK_PART_SEQUENCES,
    params:
        genomes=pack_genomes,
    log:
        "logs/index/add/packs/{pack}.log",
    benchmark:
        "benchmarks/logs/add_pack/{pack}.tsv"


rule merge_index:
    input:
        trained=TRAINED,
        info=TRAINED_INFO,
        parts=expand(PART, genome=SHARDED) + expand(PACK_PART, pack=PACKS),
        sequences=expand(PART_SEQUENCES, genome=SHARDED) + expand(PACK_PART_SEQUENCES, pack=PACKS),
        windows=shard_files(WINDOWS),
        shards=shard_files(EMBEDDINGS),
        genomes=prepared_fastas,
        plan=PLAN,
    output:
        directory(INDEX_DIR),  # index, id table, manifest, query encoder, and vectors or lists where the index type has them
    params:
        index=config["index"],
        genomes=list(SHEET),
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
