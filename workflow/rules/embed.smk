# One embedding job per shard, on a GPU where there is one (CPU otherwise): HDF5 float16.


rule embed:
    input:
        windows=WINDOWS,
        tokens=TOKENS,
        offsets=OFFSETS,
        plan=PLAN,
    output:
        EMBEDDINGS,
    params:
        runtime={k: config["embed"][k] for k in ("token_budget", "device")},  # the rest is in the plan
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


# Per genome, one HDF5 file whose datasets are virtual over its shards (nothing copied): plain h5py
# reads a genome's embeddings as one array. Runs in the main process (milliseconds, no cluster job).
localrules:
    stitch_embeddings,


rule stitch_embeddings:
    input:
        shard_files(EMBEDDINGS, job_genome),
    output:
        STITCHED,
    log:
        "logs/stitch_embeddings/{genome}.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        runtime=grow(5),
    script:
        "../../scripts/stitch_embeddings.py"
