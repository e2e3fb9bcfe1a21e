# Token ids per shard: flat int32 tokens + int64 offsets (.npy, memory-mappable); with
# embed.strands: average, the reverse-complement rows follow the forward rows.


rule tokenize:
    wildcard_constraints:
        genome=one_of(SHARDED),  # packed genomes come from their pack (embed_pack)
    input:
        windows=WINDOWS,
        fasta=GENOME,
        plan=PLAN,
    output:
        tokens=TOKENS,
        offsets=OFFSETS,
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
