# genembed: genome windows -> tokens -> embeddings (HDF5 shards) -> FAISS index -> reports.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/genomes.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/reports.smk"


rule all:
    input:
        "results/index/manifest.json",
        "results/reports/clusters/clusters.html",
        "results/reports/promoters/promoters.html",
    default_target: True
