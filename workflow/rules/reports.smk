# Clustering and promoter-prediction reports (HTML + PNG + TSV + bedGraph tracks).


rule cluster_report:
    input:
        unpack(report_inputs),
    output:
        html=report("results/reports/clusters/clusters.html", caption="../report/clusters.rst", category="Clustering"),
        tsv=report("results/reports/clusters/clusters.tsv", caption="../report/clusters_table.rst", category="Clustering"),
        enrichment=report(
            "results/reports/clusters/enrichment.tsv", caption="../report/clusters_enrichment.rst", category="Clustering"
        ),
        exemplars=report(
            "results/reports/clusters/exemplars.tsv", caption="../report/clusters_exemplars.rst", category="Clustering"
        ),
        assignments="results/reports/clusters/assignments.parquet",
        genome_distances=report(
            "results/reports/clusters/genome_distances.tsv", caption="../report/clusters_genomes.rst", category="Clustering"
        ),
        genome_tree="results/reports/clusters/genome_tree.nwk",
        genome_parquet="results/reports/clusters/genome_distances.parquet",
        pngs=report(
            multiext(
                "results/reports/clusters/",
                "umap_cluster.png",
                "umap_genome.png",
                "umap_gc.png",
                "umap_class.png",
                "composition.png",
                "enrichment.png",
                "silhouette.png",
                "genomes.png",
            ),
            caption="../report/clusters_plots.rst",
            category="Clustering",
        ),
    params:
        clusters=config["clusters"],
        upstream=config["promoters"]["upstream"],
        downstream=config["promoters"]["downstream"],
        sheet=REPORT_SHEET,
        seed=config["seed"],
    log:
        "logs/cluster_report.log",
    benchmark:
        "benchmarks/logs/cluster_report.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=grow(8000),
        runtime=grow(60),
    script:
        "../../scripts/cluster_report.py"


rule promoter_report:
    input:
        unpack(report_inputs),
        plan=PLAN,
        packs=track_packs,  # their genomes' track windows, embedded with the genomes
        track_parts=track_parts,  # the sharded genomes' track windows, one file per shard job
        promoter_scores=promoter_scores,  # the stranded model's, one file per shard job and per pack
        promoter_model=lambda w: list(stranded_model(w).values()),
    output:
        html=report("results/reports/promoters/promoters.html", caption="../report/promoters.rst", category="Promoters"),
        metrics=report("results/reports/promoters/metrics.tsv", caption="../report/promoters_metrics.rst", category="Promoters"),
        comparison=report(
            "results/reports/promoters/comparison.tsv", caption="../report/promoters_comparison.rst", category="Promoters"
        ),
        pngs=report(
            multiext("results/reports/promoters/", "roc.png", "pr.png", "calibration.png"),
            caption="../report/promoters_curves.rst",
            category="Promoters",
        ),
        tracks=expand(
            "results/reports/promoters/{genome}{ext}", genome=SHEET, ext=(".bedgraph", ".bw", ".promoters.bed")
        ),
    params:
        promoters=config["promoters"],
        sheet=REPORT_SHEET,
        seed=config["seed"],
    log:
        "logs/promoter_report.log",
    benchmark:
        "benchmarks/logs/promoter_report.tsv"
    conda:
        "../../envs/cpu.yaml"
    threads: 1  # tracks come from the embedding and scoring jobs: no model here (but packs of a model without a shared pass)
    resources:
        mem_mb=grow(8000),
        runtime=grow(60),
    script:
        "../../scripts/promoter_report.py"


# The supervised, stranded promoter model: trained once on the run's starts (bounded samples per epoch,
# the report's held-out parts left out), then scored where the genomes are split: one job per shard of a
# sharded genome (the bins of its track span) and one per pack. The report only reads the scores.
rule promoter_model:
    input:
        genomes=labeled_fastas,
        annotations=annotations(),
    output:
        weights=PROMOTER_WEIGHTS,
        record=PROMOTER_RECORD,
    params:  # only what training reads: a report setting (bootstrap, recall...) or an unlabeled genome does not retrain
        promoters={k: config["promoters"][k] for k in STRANDED_KEYS},
        sheet=LABELED_SHEET,
        seed=config["seed"],
    log:
        "logs/promoter_model.log",
    benchmark:
        "benchmarks/logs/promoter_model.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=grow(8000),
        runtime=grow(60),
    script:
        "../../scripts/promoter_model.py"


rule promoter_scores:
    wildcard_constraints:
        genome=one_of(SHARDED),
    input:
        weights=PROMOTER_WEIGHTS,
        record=PROMOTER_RECORD,
        plan=PLAN,
        fasta=GENOME,
        fai=f"{GENOME}.fai",
    output:
        SHARD_SCORES,
    log:
        "logs/promoter_scores/{genome}/{shard}.log",
    benchmark:
        "benchmarks/logs/promoter_scores/{genome}/{shard}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=grow(4000),
        runtime=grow(60),
    script:
        "../../scripts/promoter_scores.py"


rule promoter_pack_scores:
    input:
        weights=PROMOTER_WEIGHTS,
        record=PROMOTER_RECORD,
        fastas=lambda wildcards: [GENOME.format(genome=g) for g in PACKS[wildcards.pack]],
    output:
        PACK_SCORES,
    params:
        genomes=pack_genomes,
    log:
        "logs/promoter_pack_scores/{pack}.log",
    benchmark:
        "benchmarks/logs/promoter_pack_scores/{pack}.tsv"
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        mem_mb=grow(4000),
        runtime=grow(60),
    script:
        "../../scripts/promoter_scores.py"


rule evaluate_embeddings:
    input:
        plan=PLAN,
        genomes=prepared_fastas,
        shards=shard_files(EMBEDDINGS),  # the sampled windows' stored vectors are searched
        windows=shard_files(WINDOWS),
    output:  # the measures; the report is written beside the promoter report's metrics (evaluate_report)
        measures="results/evaluate/measures.parquet",
        comparison="results/evaluate/comparison.parquet",
    params:
        evaluate={k: v for k, v in config["evaluate"].items() if k != "enabled"},
        sheet=REPORT_SHEET,
        seed=config["seed"],
    log:
        "logs/evaluate_embeddings.log",
    benchmark:
        "benchmarks/logs/evaluate_embeddings.tsv"
    conda:
        "../../envs/cpu.yaml"
    threads: 2  # the model runs here (the mutated and reverse-complement windows)
    resources:
        mem_mb=grow(4000),
        runtime=grow(60),
    script:
        "../../scripts/evaluate_embeddings.py"


localrules:
    evaluate_report,


rule evaluate_report:
    input:
        plan=PLAN,
        measures=rules.evaluate_embeddings.output.measures,
        comparison=rules.evaluate_embeddings.output.comparison,
        promoters=lambda wc: ["results/reports/promoters/metrics.tsv"] if annotations() else [],
    output:
        html=report("results/reports/evaluate/evaluate.html", caption="../report/evaluate.rst", category="Evaluation"),
        tsv=report("results/reports/evaluate/evaluate.tsv", caption="../report/evaluate.rst", category="Evaluation"),
        comparison="results/reports/evaluate/comparison.tsv",
        png=report("results/reports/evaluate/evaluate.png", caption="../report/evaluate.rst", category="Evaluation"),
    params:
        evaluate={k: v for k, v in config["evaluate"].items() if k != "enabled"},
        genomes=list(SHEET),
        seed=config["seed"],
    log:
        "logs/evaluate_report.log",
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/evaluate_report.py"
