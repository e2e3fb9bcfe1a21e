# Sample-sheet loading, validation, wildcard constraints and input functions.
import json
from pathlib import Path

import polars as pl
from snakemake.utils import validate

from genembed.genome import read_fai
from genembed.windows import WindowSpec, genome_code, shard_count


validate(config, "../schemas/config.schema.yaml")

GENOMES = pl.read_csv(
    config["genomes"], separator="\t", comment_prefix="#", schema_overrides={"genome": pl.String}
)
if "annotation" not in GENOMES.columns:
    GENOMES = GENOMES.with_columns(pl.lit(None, pl.String).alias("annotation"))
if GENOMES["genome"].is_duplicated().any():
    raise ValueError(
        f"{config['genomes']}: duplicate genome ids: "
        + ", ".join(GENOMES.filter(pl.col("genome").is_duplicated())["genome"].unique().to_list())
    )
SHEET = {}
for row in GENOMES.iter_rows(named=True):
    validate(row, "../schemas/genomes.schema.yaml")
    SHEET[row["genome"]] = row
_codes = {}
for _g in SHEET:  # window ids carry a 31-bit hash of the genome id: refuse the rare collision
    if genome_code(_g) in _codes:
        raise ValueError(f"{config['genomes']}: genome ids {_codes[genome_code(_g)]} and {_g} hash alike; rename one")
    _codes[genome_code(_g)] = _g
MODEL_JSON = "results/model/model.json"
PRETRAIN = config["model"]["pretrain"]["enabled"]
MODEL_DIR = "results/model/pretrained" if PRETRAIN else config["model"]["path"]


wildcard_constraints:
    genome="[A-Za-z0-9][A-Za-z0-9._-]*",
    shard="[0-9]{5}",


def genome_fasta(wildcards):
    return SHEET[wildcards.genome]["fasta"]


def model_inputs(wildcards):
    """The model folder when it is local (so a changed model re-runs its users)."""
    return [MODEL_DIR] if PRETRAIN or Path(MODEL_DIR).is_dir() else []


def shards(genome):
    """Shard names of a genome, planned from its contig lengths once it is indexed (checkpoint)."""
    fai = checkpoints.prepare_genome.get(genome=genome).output.fai
    n = shard_count(read_fai(fai), window_spec())
    if n > 99_999:
        raise ValueError(f"{genome}: {n} shards (over 99,999); raise windows.shard_size")
    return [f"{i:05d}" for i in range(n)]


def window_spec():
    """The windows the model description planned (sizes resolved from the model when auto)."""
    plan = checkpoints.describe_model.get().output[0]
    return WindowSpec.from_config(json.loads(Path(plan).read_text())["windows"])


def all_shards(pattern):
    def inputs(wildcards):
        return [pattern.format(genome=g, shard=s) for g in SHEET for s in shards(g)]

    return inputs


def prepared_fastas(wildcards):
    return {g: f"results/genomes/{g}/genome.fa.gz" for g in SHEET}


def annotations():
    return {g: row["annotation"] for g, row in SHEET.items() if row["annotation"]}


def report_inputs(wildcards):
    return {
        "shards": all_shards("results/embeddings/{genome}/{shard}.h5")(wildcards),
        "windows": all_shards("results/windows/{genome}/{shard}.parquet")(wildcards),
        "genomes": list(prepared_fastas(wildcards).values()),
        "annotations": list(annotations().values()),
    }


def final_outputs():
    """Index and reports; the promoter report only when some genome has an annotation."""
    out = ["results/index/manifest.json", "results/reports/clusters/clusters.html"]
    if annotations():
        out.append("results/reports/promoters/promoters.html")
    return out
