# Sample-sheet loading, validation, wildcard constraints and input functions (the decisions behind
# them are library functions in genembed.run.workflow).
import re
import sys
from pathlib import Path

from snakemake.utils import validate

from genembed.data import layout
from genembed.data.genome import read_fai, sidecar_fai
from genembed.search.index import IndexSettings
from genembed.encode.plan import RunPlan
from genembed.data.windows import WindowPlan, shard_count, stride_of, window_count
from genembed.run.workflow import (estimated_contigs, plan_packs, read_packs, read_sheet, shard_names, training_genomes,
                               with_defaults)


config = with_defaults(config)
validate(config, "../schemas/config.schema.yaml")
SHEET = {}
for row in read_sheet(config["genomes"]):
    validate(row, "../schemas/genomes.schema.yaml")
    SHEET[row["genome"]] = row

PLAN, GENOME, WINDOWS, TOKENS, OFFSETS, EMBEDDINGS, STITCHED, PACK, TRACK_PART = (
    f"results/{p}"
    for p in (layout.PLAN, layout.GENOME, layout.WINDOWS, layout.TOKENS, layout.OFFSETS, layout.EMBEDDINGS, layout.STITCHED,
              layout.PACK, layout.TRACK_PART)
)
PROMOTER_WEIGHTS, PROMOTER_RECORD, SHARD_SCORES, PACK_SCORES = (
    f"results/{p}" for p in (layout.PROMOTER_WEIGHTS, layout.PROMOTER_RECORD, layout.SHARD_SCORES, layout.PACK_SCORES)
)
INDEX_DIR = "results/index"
# what the index build keeps between runs (the trained, empty index; one part per genome)
TRAINED, TRAINED_INFO = "results/index_build/trained.faiss", "results/index_build/trained.json"
PART, PART_INFO = "results/index_build/parts/{genome}.faiss", "results/index_build/parts/{genome}.json"
PACK_PART, PACK_PART_INFO = "results/index_build/packs/{pack}.faiss", "results/index_build/packs/{pack}.json"
# beside each part: its genomes' genome and contig vectors (genembed.search.index: the index's genome and contig levels)
PART_SEQUENCES, PACK_PART_SEQUENCES = PART.replace(".faiss", ".sequences.parquet"), PACK_PART.replace(".faiss", ".sequences.parquet")
INDEX = IndexSettings.from_config(config["index"], config["seed"])
PRETRAIN = config["model"]["pretrain"]["enabled"]
WINDOW_CONFIG = {k: v for k, v in config["windows"].items() if k != "pack_bp"}  # the plan's (packing is scheduling)
MODEL_DIR = "results/model/pretrained" if PRETRAIN else config["model"]["path"]


def grow(base: int):
    """A resource that grows with each attempt (``retries`` in the SLURM profile): base x attempt."""
    return lambda wildcards, attempt: base * attempt


wildcard_constraints:
    genome="[A-Za-z0-9][A-Za-z0-9._-]*",
    shard="[0-9]{5}",
    pack="[A-Za-z0-9][A-Za-z0-9._-]*",


def genome_fasta(wildcards):
    return SHEET[wildcards.genome]["fasta"]


def model_inputs(wildcards):
    """The model folder when it is local (so a changed model re-runs its users)."""
    return [MODEL_DIR] if PRETRAIN or Path(MODEL_DIR).is_dir() else []


_CONTIGS, _SAID = {}, set()


def say(message):
    if message not in _SAID:
        _SAID.add(message)
        print(f"genembed: {message}", file=sys.stderr)


def known_contigs(genome):
    """A genome's contigs when a .fai gives them without running anything: its prepared copy's, else a
    samtools .fai beside its FASTA (checked when the genome is prepared), so a dry-run plans every shard."""
    if genome not in _CONTIGS:
        prepared = Path(f"{GENOME.format(genome=genome)}.fai")
        fai = prepared if prepared.is_file() else sidecar_fai(SHEET[genome]["fasta"])
        if fai is None:
            return None
        _CONTIGS[genome] = read_fai(fai)
    return _CONTIGS[genome]


def genome_bp(genome):
    """A genome's size: from its .fai where there is one, else estimated from its FASTA's size."""
    return sum(n for _, n in known_contigs(genome) or estimated_contigs(SHEET[genome]["fasta"]))


# Small genomes are embedded together, one job per pack (genembed.run.workflow.plan_packs); the others
# are cut into shards, one windows, tokenize and embed job each. Each rule takes its own genomes.
PACKS = plan_packs({g: genome_bp(g) for g in SHEET}, read_packs(Path(PACK).parent), config["windows"]["pack_bp"])
PACK_OF = {g: pack for pack, genomes in PACKS.items() for g in genomes}
SHARDED = [g for g in SHEET if g not in PACK_OF]


def one_of(names):
    """A wildcard pattern matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def pack_genomes(wildcards):
    return PACKS[wildcards.pack]


def pack_fastas(wildcards):
    return [SHEET[g]["fasta"] for g in pack_genomes(wildcards)]


def window_plan():
    """The run plan's windows; the config's while it has no auto size (so the DAG needs no model)."""
    if not Path(PLAN).is_file() and WINDOW_CONFIG["size"] != "auto":
        return WindowPlan.from_config(WINDOW_CONFIG)
    return RunPlan.read(checkpoints.describe_model.get().output[0]).windows


def shards(genome):
    """Shard names of a genome: one for a packed genome, else planned from its contig lengths (after
    the prepare_genome checkpoint when no .fai is there yet)."""
    if genome in PACK_OF:
        return [layout.shard_name(0)]  # one shard per genome in a pack
    found = known_contigs(genome) or read_fai(checkpoints.prepare_genome.get(genome=genome).output.fai)
    spec = window_plan().spec(found)
    return shard_names(genome, shard_count(found, spec, SHEET[genome]["fasta"]), spec.shard_size, say)


def shard_files(pattern, genomes=lambda wildcards: SHEET):
    """Input function: ``pattern`` for every shard of ``genomes`` (of the sheet, by default)."""
    return lambda wildcards: [pattern.format(genome=g, shard=s) for g in genomes(wildcards) for s in shards(g)]


def job_genome(wildcards):
    return [wildcards.genome]


def train_genomes(wildcards):
    """The genomes the index is trained on: the stored training's while it fits (adding a genome does
    not retrain), else all (and the run says why)."""
    planned = 0
    for g in SHEET:
        found = known_contigs(g) or estimated_contigs(SHEET[g]["fasta"])
        planned += window_count(found, window_plan().spec(found))
    genomes, why = training_genomes(TRAINED_INFO, list(SHEET), planned, INDEX)
    if why:
        say(f"retraining the index: {why}")
    return genomes


def prepared_fastas(wildcards):
    return [GENOME.format(genome=g) for g in SHEET]


REPORT_SHEET = {g: {c: row[c] for c in ("annotation", "promoters")} for g, row in SHEET.items()}


def annotations():
    """Annotation and promoter-BED files of the genomes that have them."""
    return [row[c] for row in SHEET.values() for c in ("annotation", "promoters") if row[c]]


def report_inputs(wildcards):
    return {
        "shards": shard_files(EMBEDDINGS)(wildcards),
        "windows": shard_files(WINDOWS)(wildcards),
        "genomes": prepared_fastas(wildcards),
        "annotations": annotations(),
    }


def track_step(wildcards=None):
    """The promoter track's step, which the packs embed with their genomes' windows (one pass for both)
    when it is below the stride (RunPlan.track), where a promoter report runs; else 0. Read from the
    config, not the plan: asking the describe_model checkpoint here would mark every pack for a rerun
    (with windows.size auto the stride is not known yet: a track is planned)."""
    step, size, stride = config["promoters"]["track_step"], WINDOW_CONFIG["size"], WINDOW_CONFIG["stride"]
    stride = stride if size == "auto" else stride_of(int(size), stride)
    return step if annotations() and step > 0 and (stride == "auto" or step < stride) else 0


def track_packs(wildcards):
    """The packs whose genomes' track windows the promoter report scores (see track_step)."""
    return [PACK.format(pack=p) for p in PACKS] if track_step() else []


def shard_track_output():
    """The embed rule's second output, where a dense track is made: the shard's part of it."""
    return {"track": TRACK_PART} if track_step() else {}


def track_parts(wildcards):
    """The sharded genomes' track parts, one per shard job (see track_step)."""
    return shard_files(TRACK_PART, lambda w: [g for g in SHEET if g in SHARDED])(wildcards) if track_step() else []


STRANDED_KEYS = ("test_fraction", "split", "operon_gap", "call_precision", "stranded_epochs", "negative_coding_share")


LABELED_SHEET = {g: row for g, row in REPORT_SHEET.items() if row["annotation"] or row["promoters"]}


def labeled_fastas(wildcards):
    """The prepared FASTAs of the genomes with starts (an annotation or a promoter BED): what the
    stranded model trains on; a genome without them does not retrain it."""
    return [GENOME.format(genome=g) for g in LABELED_SHEET]


def stranded():
    """Whether the promoter report has its supervised, stranded model (trained and scored in jobs of its own)."""
    return bool(annotations()) and config["promoters"]["stranded"]


def promoter_scores(wildcards):
    """The stranded model's score files: one per shard of a sharded genome, one per pack."""
    if not stranded():
        return []
    return shard_files(SHARD_SCORES, lambda w: SHARDED)(wildcards) + [PACK_SCORES.format(pack=p) for p in PACKS]


def stranded_model(wildcards):
    return {"promoter_weights": PROMOTER_WEIGHTS, "promoter_record": PROMOTER_RECORD} if stranded() else {}


def final_outputs():
    """Index, per-genome embeddings (virtual HDF5) and reports; the promoter report only when some genome has an
    annotation or a promoter BED; the evaluation unless turned off."""
    out = [INDEX_DIR, "results/reports/clusters/clusters.html"]
    out += [STITCHED.format(genome=g) for g in SHEET]
    if annotations():
        out.append("results/reports/promoters/promoters.html")
    if config["evaluate"]["enabled"]:
        out.append("results/reports/evaluate/evaluate.html")
    return out
