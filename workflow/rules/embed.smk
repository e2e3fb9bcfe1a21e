# One embedding job per shard, on a GPU where there is one (CPU otherwise): HDF5 float16. Where a
# promoter report runs a dense track, the job also embeds the track windows of its own span (one
# file per shard): the report then reads tracks and loads no model.


rule embed:
    wildcard_constraints:
        genome=one_of(SHARDED),  # packed genomes come from their pack (embed_pack)
    input:
        windows=WINDOWS,
        tokens=TOKENS,
        offsets=OFFSETS,
        plan=PLAN,
        fasta=GENOME,
        fai=f"{GENOME}.fai",
    output:
        embeddings=EMBEDDINGS,
        **shard_track_output(),
    params:
        runtime={k: config["embed"][k] for k in ("token_budget", "device")},  # the rest is in the plan
        track_step=track_step,  # the promoter track's windows in the shard's span
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


# Small genomes (up to windows.pack_bp, together up to that much per job) go through every stage in
# one job per pack: one process, one model load, instead of a prepare, windows, tokenize and embed
# job per genome. The pack's folder is laid out like results/; take_from_pack links each genome's
# files into results/ (hard links: nothing copied), where the other stages find them, its
# stitched file (all.h5) included.
rule embed_pack:
    input:
        fastas=pack_fastas,
        plan=PLAN,
    output:
        directory(PACK),
    params:
        genomes=pack_genomes,
        runtime={k: config["embed"][k] for k in ("token_budget", "device")},
        track_step=track_step,  # the promoter track's windows, embedded in the same pass
    log:
        "logs/embed_pack/{pack}.log",
    benchmark:
        "benchmarks/logs/embed_pack/{pack}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=grow(8000),
        runtime=grow(240),
    script:
        "../../scripts/embed_pack.py"


localrules:
    take_from_pack,


rule take_from_pack:
    input:
        lambda wildcards: PACK.format(pack=PACK_OF[wildcards.genome]),
    output:
        fasta=GENOME,
        fai=f"{GENOME}.fai",
        gzi=f"{GENOME}.gzi",
        windows=WINDOWS.replace("{shard}", layout.shard_name(0)),
        embeddings=EMBEDDINGS.replace("{shard}", layout.shard_name(0)),
        stitched=STITCHED,
    wildcard_constraints:
        genome=one_of(PACK_OF),
    log:
        "logs/take_from_pack/{genome}.log",
    conda:
        "../../envs/cpu.yaml"
    params:  # shards of an earlier, sharded run of the genome, which the pack replaces
        strays=lambda wildcards: [p.format(genome=wildcards.genome, shard="0*") for p in (WINDOWS, TOKENS, OFFSETS, EMBEDDINGS)],
    shell:  # linked, then touched: newer than the pack
        "(rm -f {params.strays}; for f in {output}; do ln -f {input}/${{f#results/}} $f || cp {input}/${{f#results/}} $f;"
        " touch $f; done) 2> {log}"


# Per genome, one HDF5 file whose datasets are virtual over its shards (nothing copied): plain h5py
# reads a genome's embeddings as one array. Runs in the main process (milliseconds, no cluster job).
localrules:
    stitch_embeddings,


rule stitch_embeddings:
    wildcard_constraints:
        genome=one_of(SHARDED),
    input:
        shards=shard_files(EMBEDDINGS, job_genome),
        windows=shard_files(WINDOWS, job_genome),  # the contigs of the genome and contig vectors
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
