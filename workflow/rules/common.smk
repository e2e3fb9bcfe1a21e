# Sample-sheet loading, validation, wildcard constraints and input functions.
import json
import sys
from pathlib import Path

import polars as pl
from snakemake.utils import validate

from genembed.genome import read_fai, sidecar_fai
from genembed.index import IndexSettings, needs_retraining
from genembed.io import is_gzip
from genembed.windows import WindowSpec, genome_code, shard_count, window_count


validate(config, "../schemas/config.schema.yaml")

GENOMES = pl.read_csv(
    config["genomes"], separator="\t", comment_prefix="#", schema_overrides={"genome": pl.String}
)
for _column in ("annotation", "promoters"):  # optional columns
    if _column not in GENOMES.columns:
        GENOMES = GENOMES.with_columns(pl.lit(None, pl.String).alias(_column))
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
TRAINED, TRAINED_INFO = "results/index/trained.faiss", "results/index/trained.json"
INDEX = IndexSettings.from_config(config["index"], config["seed"])
PRETRAIN = config["model"]["pretrain"]["enabled"]
MODEL_DIR = "results/model/pretrained" if PRETRAIN else config["model"]["path"]


def grow(base: int):
    """A resource that grows with each attempt (``retries`` in the SLURM profile): base x attempt."""
    return lambda wildcards, attempt: base * attempt


wildcard_constraints:
    genome="[A-Za-z0-9][A-Za-z0-9._-]*",
    shard="[0-9]{5}",


def genome_fasta(wildcards):
    return SHEET[wildcards.genome]["fasta"]


def model_inputs(wildcards):
    """The model folder when it is local (so a changed model re-runs its users)."""
    return [MODEL_DIR] if PRETRAIN or Path(MODEL_DIR).is_dir() else []


_CONTIGS = {}


def known_contigs(genome):
    """A genome's (name, length) contigs when a .fai gives them without running anything: its
    prepared copy's, else a samtools .fai shipped beside its FASTA (checked against the FASTA when
    the genome is prepared), so a dry-run plans every shard. None before either exists."""
    if genome not in _CONTIGS:
        prepared = Path(f"results/genomes/{genome}/genome.fa.gz.fai")
        fai = prepared if prepared.is_file() else sidecar_fai(SHEET[genome]["fasta"])
        if fai is None:
            return None
        _CONTIGS[genome] = read_fai(fai)
    return _CONTIGS[genome]


def contigs(genome):
    """A genome's contigs: from a .fai already there, else once the prepare_genome checkpoint has run."""
    return known_contigs(genome) or read_fai(checkpoints.prepare_genome.get(genome=genome).output.fai)


def shards(genome):
    """Shard names of a genome, planned from its contig lengths."""
    found = contigs(genome)
    spec = window_spec(found)
    n = shard_count(found, spec, SHEET[genome]["fasta"])
    if n > 99_999:
        raise ValueError(f"{genome}: {n} shards (over 99,999); raise windows.shard_size")
    if n > 2_000 and "shards" not in _SAID:  # more embedding jobs than a scheduler handles comfortably
        _SAID.add("shards")
        print(f"genembed: {genome} has {n:,} shards of {spec.shard_size:,} windows (3 jobs each); for large"
              " genomes raise windows.shard_size, or set it to auto (docs/scaling.md)", file=sys.stderr)
    return [f"{i:05d}" for i in range(n)]


def window_spec(genome_contigs):
    """The windows the model description planned for a genome with these contigs (sizes resolved
    from the model when auto; shard size per genome when auto). With numeric window sizes the plan
    is the config's, so the DAG is built without waiting for the model."""
    plan = Path(MODEL_JSON)
    if not plan.is_file() and "auto" not in (config["windows"]["size"], config["windows"]["stride"]):
        return WindowSpec.from_config(config["windows"], genome_contigs)
    plan = checkpoints.describe_model.get().output[0]
    return WindowSpec.from_config(json.loads(Path(plan).read_text())["windows"], genome_contigs)


def all_shards(pattern):
    def inputs(wildcards):
        return [pattern.format(genome=g, shard=s) for g in SHEET for s in shards(g)]

    return inputs


def genome_shards(pattern):
    """Input function: ``pattern`` for every shard of the job's genome."""

    def inputs(wildcards):
        return [pattern.format(genome=wildcards.genome, shard=s) for s in shards(wildcards.genome)]

    return inputs


def planned_windows(genome):
    """Windows of a genome as planned from its contig lengths (before N filtering). A genome with no
    .fai yet is estimated from its FASTA's size (gzip: 4 bp per byte), so that the decision to
    retrain the index is taken when the DAG is built, also in a dry-run; later runs use the exact
    count."""
    found = known_contigs(genome)
    if found is None:
        fasta = Path(SHEET[genome]["fasta"])
        if not fasta.is_file():
            return 0  # prepare_genome reports the missing file
        found = [(genome, fasta.stat().st_size * (4 if is_gzip(fasta) else 1))]
    return window_count(found, window_spec(found))


_SAID = set()


def train_genomes():
    """The genomes the index is trained on: those of the stored training while it still fits the
    collection (so adding a genome does not retrain), else every genome (and the run says why)."""
    info = Path(TRAINED_INFO)
    if not info.is_file():
        return list(SHEET)
    trained = json.loads(info.read_text())
    if any(g not in SHEET for g in trained["genomes"]):
        why = "a genome it was trained on left the sheet"
    else:
        why = needs_retraining(trained, sum(planned_windows(g) for g in SHEET), INDEX)
    if why is None:
        return trained["genomes"]
    if why not in _SAID:
        _SAID.add(why)
        print(f"genembed: retraining the index: {why}", file=sys.stderr)
    return list(SHEET)


def train_inputs(pattern):
    def inputs(wildcards):
        return [pattern.format(genome=g, shard=s) for g in train_genomes() for s in shards(g)]

    return inputs


def prepared_fastas(wildcards):
    return {g: f"results/genomes/{g}/genome.fa.gz" for g in SHEET}


def annotations():
    """Annotation and promoter-BED files of the genomes that have them."""
    return {g: [row[c] for c in ("annotation", "promoters") if row[c]] for g, row in SHEET.items()
            if row["annotation"] or row["promoters"]}


def report_inputs(wildcards):
    return {
        "shards": all_shards("results/embeddings/{genome}/{shard}.h5")(wildcards),
        "windows": all_shards("results/windows/{genome}/{shard}.parquet")(wildcards),
        "genomes": list(prepared_fastas(wildcards).values()),
        "annotations": [f for files in annotations().values() for f in files],
    }


def final_outputs():
    """Index, per-genome embeddings (virtual HDF5) and reports; the promoter report only when some genome has an
    annotation or a promoter BED; the evaluation unless turned off."""
    out = ["results/index/manifest.json", "results/reports/clusters/clusters.html"]
    out += [f"results/embeddings/{g}.h5" for g in SHEET]
    if annotations():
        out.append("results/reports/promoters/promoters.html")
    if config["evaluate"]["enabled"]:
        out.append("results/reports/evaluate/evaluate.html")
    return out
