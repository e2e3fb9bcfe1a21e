"""Build a FAISS index (cosine similarity: L2-normalised vectors, inner product) over embedding
shards, with a Parquet id table and a manifest that fingerprints the model and settings."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import polars as pl

from genembed import SCHEMA_VERSION
from genembed.errors import GenembedError
from genembed.data.io import atomic_path, count_rows, read_table, write_json
from genembed.data.layout import GenomeInputs
from genembed.data.identity import INDEX_FIELDS, ShardIdentity
from genembed.data.store import check_consistent, iter_shards
from genembed.data.vectors import normalise
from genembed.data.windows import check_codes

if TYPE_CHECKING:
    from genembed.data.vectors import SequenceVectors
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan

log = logging.getLogger(__name__)
INDEX_FILE, TABLE_FILE, MANIFEST_FILE = "index.faiss", "windows.parquet", "manifest.json"
VECTORS_FILE = "vectors.npy"  # every vector, float16 in id-table order, memory-mapped: re-scoring, region queries, E-values
GENOMES_DIR = "genomes"  # a copy (or hard link) of each genome, so that a moved index answers region queries
IVFDATA_SUFFIX = ".ivfdata"  # IVF indexes: the inverted lists, on disk beside the index file
LEVELS = ("genome", "contig")  # whole-sequence vectors (genembed.reports.compare), each level a small exact index:
LEVEL_FILES = {level: (f"{level}s.faiss", f"{level}s.parquet") for level in LEVELS}  # its FAISS file and id table
#: Shard attrs that every shard of one index must share, and that a query must match.
TYPES = ("auto", "flat", "ivf", "hnsw", "ivfpq")
EXACT_BELOW, PQ_FROM = 100_000, 5_000_000


class IndexManifest(dict):
    """An index folder's ``manifest.json``: its JSON (a dict, as written) with typed views of what it
    records: the run's plan (model, tokenizer, windows, embedding settings) and the shards' identity."""

    @functools.cached_property
    def plan(self) -> "RunPlan":
        from genembed.encode.plan import RunPlan

        return RunPlan.from_json(self["model"])

    @functools.cached_property
    def identity(self) -> ShardIdentity:
        return ShardIdentity.from_attrs(self["settings"])

    def model(self, folder: str | None = None) -> "ModelSpec":
        """The model to embed queries with: ``folder`` when given, else the folder the index was built
        from while it exists, else its source (a hub id: an index moved to another machine)."""
        from genembed.encode.models import ModelSpec

        plan = self.plan
        chosen = folder or (plan.folder if Path(plan.folder).is_dir() else plan.source)
        return ModelSpec(chosen, plan.revision, plan.trust_remote_code)


@dataclass(frozen=True)
class IndexSettings:
    """``type`` picks the FAISS index by collection size (``auto``) or by name; ``factory``, when set,
    is any FAISS factory string instead. Approximate indexes are trained on ``train_size`` sampled
    vectors and retrained once the collection grows ``retrain_factor`` times past what they were
    trained for. ``nprobe`` (IVF) and ``ef_search`` (HNSW) trade speed for recall at query time;
    indexes with lossy codes (PQ) fetch ``rerank`` times the hits asked for and re-score them exactly
    with the stored embeddings (1: off)."""

    type: str = "auto"
    factory: str | None = None
    train_size: int = 100_000
    nprobe: int = 16
    ef_search: int = 64
    rerank: int = 30
    retrain_factor: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise GenembedError(f"index.type must be one of {TYPES}, not {self.type!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], seed: int = 0) -> "IndexSettings":
        keys = ("type", "factory", "train_size", "nprobe", "ef_search", "rerank", "retrain_factor")  # gpu: a job resource
        return cls(**{k: cfg[k] for k in keys if k in cfg}, seed=seed)

    def factory_for(self, n: int, dim: int) -> str:
        """The factory string for a collection of ``n`` vectors of dimension ``dim``."""
        if self.factory:
            return self.factory
        kind = self.type
        if kind == "auto":
            kind = "flat" if n < EXACT_BELOW else "hnsw" if n < PQ_FROM else "ivfpq"
        nlist = _nlist(n, self.train_size)
        if kind == "flat":
            return "Flat"
        if kind == "ivf":
            return f"IVF{nlist},Flat"
        if kind == "hnsw":
            return "HNSW32"
        # a byte per 8 dimensions, at most 56: with its 8-byte id a vector takes at most 64 bytes
        m = max(d for d in range(1, max(1, min(dim // 8, 56)) + 1) if dim % d == 0)
        return f"OPQ{m},IVF{nlist},PQ{m}"


def _nlist(n: int, train_size: int) -> int:
    """IVF lists: a power of two near 4 sqrt(n), with at least 39 training points per list (of the
    collection and of the training sample: raise ``train_size`` for more lists)."""
    target = min(4 * np.sqrt(max(n, 1)), max(n, 1) / 39)
    lists = 2 ** round(np.log2(max(target, 1)))
    while lists > 16 and lists * 39 > min(n, train_size):
        lists //= 2
    return int(min(65536, max(16, lists)))


def family(factory: str) -> str:
    """What kind of index a factory string builds (retraining is needed when the kind changes)."""
    upper = factory.upper()
    return "ivfpq" if "IVF" in upper and "PQ" in upper else "ivf" if "IVF" in upper else \
        "hnsw" if "HNSW" in upper else "pq" if "PQ" in upper else "flat"


def _training_sample(shards: Sequence[str | os.PathLike], total: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = min(1.0, size / max(total, 1))
    parts = [s.embeddings[rng.random(len(s.embeddings)) < keep] for s in iter_shards(shards)]
    return normalise(np.concatenate(parts))


def _count(windows: Sequence[str | os.PathLike]) -> int:
    return sum(count_rows(w) for w in windows)


def genome_files(genomes: Sequence[GenomeInputs]) -> tuple[list[Path], list[Path]]:
    """The genomes' embedding shards and window tables, in matching order."""
    return [s for g in genomes for s in g.shards], [w for g in genomes for w in g.windows]


def train_index(genomes: Sequence[GenomeInputs], out: str | os.PathLike, settings: IndexSettings,
                plan: RunPlan) -> dict[str, Any]:
    """Train the (empty) index once on a sample of these genomes' shards (all the collection holds
    when it is trained; refused when embedded with another model than the plan's) and store it with
    a JSON sidecar saying what it was trained for. The number of windows picks the index type."""
    import faiss

    shards, windows = genome_files(genomes)
    if not shards:
        raise GenembedError("no embedding shards given")
    check_codes([g.name for g in genomes], "index")
    identity = check_consistent(shards, INDEX_FIELDS)
    if identity.model_fingerprint != plan.fingerprint:
        raise GenembedError(f"{shards[0]}: embedded with another model than {plan.source}; re-embed")
    dim = int(identity.dim)
    trained_on = _count(windows)
    factory = settings.factory_for(trained_on, dim)
    # PQ codebooks want 39 training points per code (256 codes): below that FAISS prints hundreds of warnings
    # and the codes are poor (an IVF-Flat's 16 lists train on fewer with one warning, and work)
    least = 256 * 39 if family(factory) == "ivfpq" else 0
    if least and not settings.factory and trained_on < least:
        raise GenembedError(f"index.type {settings.type}: {factory} needs at least {least:,} windows to train on, and"
                            f" this collection has {trained_on:,}; use auto, flat or hnsw")
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GenembedError(f"index.factory {factory!r} is not a valid FAISS factory string ({str(exc).splitlines()[0]})") from None
    if not index.is_trained:
        sample = _training_sample(shards, trained_on, settings.train_size, settings.seed)
        log.info("training %s on %d of %d vectors", factory, len(sample), trained_on)
        index = train_on_gpu_or_cpu(index, sample)
    out = Path(out)
    write_index_file(index, out)
    info = {"factory": factory, "family": family(factory), "dim": dim, "trained_for": max(trained_on, 1),
            "genomes": [g.name for g in genomes], "identity": identity.to_attrs()}
    write_json(sidecar(out), info)
    return info


def train_on_gpu_or_cpu(index, sample: np.ndarray, to_gpu: Callable[[Any], Any] | None = None):
    """``index`` trained on ``sample``: on the GPUs where FAISS has them (``to_gpu``: the device
    copy), else, or when training there fails (out of memory, a kernel or driver error), on the CPU,
    with a warning. Returns the trained CPU index."""
    import faiss

    device_copy = (to_gpu or _to_gpu)(index)
    if device_copy is not None:
        try:
            device_copy.train(sample)
            log.info("trained on the GPU")
            return faiss.index_gpu_to_cpu(device_copy)
        except (RuntimeError, MemoryError) as exc:
            log.warning("FAISS training on the GPU failed (%s); training on the CPU", str(exc).strip().splitlines()[0])
    index.train(sample)
    return index


def _to_gpu(index):
    """The index on every GPU when FAISS's GPU build and a GPU are present (else None)."""
    import faiss

    if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0:
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:  # no GPU version of this index type (HNSW): train on the CPU
        return None


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def needs_retraining(trained: dict[str, Any], collection: int, settings: IndexSettings) -> str | None:
    """Why a stored trained index no longer fits a collection of ``collection`` windows, or None."""
    wanted = family(settings.factory_for(collection, int(trained["dim"])))
    if wanted != trained["family"]:
        return f"{collection:,} windows call for a {wanted} index, the stored one is {trained['family']}"
    if trained["family"] in ("ivf", "ivfpq", "pq") and collection > settings.retrain_factor * trained["trained_for"]:
        return (f"the collection ({collection:,} windows) outgrew the index trained for {trained['trained_for']:,}"
                f" (index.retrain_factor {settings.retrain_factor})")
    return None


def add_part(trained: str | os.PathLike, genomes: Sequence[GenomeInputs], out: str | os.PathLike) -> int:
    """Genomes' vectors (one genome's, or a pack's) added to a copy of the trained index, under their
    window ids (HNSW parts hold the exact vectors; the graph is built when the parts are merged)."""
    import faiss

    shards, windows = genome_files(genomes)

    info = json.loads(sidecar(Path(trained)).read_text())
    if shards:
        trained_for = ShardIdentity.from_attrs(info["identity"])
        check_consistent(list(shards), INDEX_FIELDS).require(trained_for, f"{shards[0]}: its vectors", "the trained index",
                                                             "trained index", advice="re-embed or retrain")
    index = with_ids(faiss.IndexFlatIP(info["dim"]) if info["family"] == "hnsw" else read_index_file(trained))
    from genembed.data.vectors import VectorSums

    count = 0
    sums = {g.name: VectorSums() for g in genomes if g.shards}  # the genome and contig vectors, in the same pass
    owner = [g.name for g in genomes for _ in g.shards]
    for shard, table, name in zip(iter_shards(shards), windows, owner):
        rows = read_table(table, ["window_id", "contig"])
        if not np.array_equal(rows["window_id"].to_numpy(), shard.window_id):
            raise GenembedError(f"{table}: window ids differ from those in the embedding shard")
        if len(shard.window_id):
            index.add_with_ids(normalise(shard.embeddings), shard.window_id)
            sums[name].add(rows["contig"].to_numpy(), shard.embeddings)
            count += len(shard.window_id)
    out = Path(out)
    write_index_file(index, out)
    _write_sequence_vectors([s.vectors(name) for name, s in sums.items()], sequences_file(out))
    write_json(sidecar(out), {"count": count, "identity": info["identity"], "factory": info["factory"]})
    return count


def sequences_file(part: Path) -> Path:
    return part.with_suffix(".sequences.parquet")  # beside the part: its genomes' genome and contig vectors


def _write_sequence_vectors(vectors: Sequence["SequenceVectors"], path: Path) -> None:
    """A part's genome and contig vectors (from its own genomes' shards only): level, genome, contig,
    windows, vector."""
    rows = []
    for v in vectors:
        rows.append(("genome", v.genome, None, int(v.contigs["windows"].sum()), v.vector))
        rows += [("contig", v.genome, c, n, v.contig_vectors[i]) for i, (c, n) in enumerate(v.contigs.iter_rows())]
    table = pl.DataFrame({"level": [r[0] for r in rows], "genome": [r[1] for r in rows], "contig": [r[2] for r in rows],
                          "windows": [r[3] for r in rows], "vector": [r[4].tolist() for r in rows]},
                         schema={"level": pl.String, "genome": pl.String, "contig": pl.String, "windows": pl.Int64,
                                 "vector": pl.List(pl.Float32)})
    with atomic_path(path) as tmp:
        table.write_parquet(tmp)


def is_ivf(index) -> bool:
    """True for IVF indexes (also behind a transform such as OPQ)."""
    import faiss

    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def with_ids(index):
    """IVF indexes store ids themselves; others (Flat, HNSW, PQ) need an id map around them."""
    import faiss

    return index if is_ivf(index) or isinstance(index, faiss.IndexIDMap) else faiss.IndexIDMap2(index)


@contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send what native code prints to stdout (file descriptor 1, where query results go) to /dev/null."""
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def read_manifest(index_dir: str | os.PathLike) -> IndexManifest:
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise GenembedError(f"{index_dir}: not a genembed index (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenembedError(f"{path}: invalid JSON ({exc})") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise GenembedError(f"{path}: schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}")
    return IndexManifest(manifest)


def read_index(index_dir: str | os.PathLike, settings: dict[str, Any] | None = None):
    """The index of a built index folder, with its search knobs (nprobe, efSearch) applied."""
    import faiss

    index = read_index_file(Path(index_dir) / INDEX_FILE)
    for knob, name in (("nprobe", "nprobe"), ("ef_search", "efSearch")):
        value = (settings or {}).get(knob)
        if value:
            try:
                faiss.ParameterSpace().set_index_parameter(index, name, int(value))
            except RuntimeError:
                pass  # this index type has no such knob
    return index


def write_index_file(index, path: str | os.PathLike) -> None:
    """Write a FAISS index atomically; a full disk is one line naming the file (FAISS raises a
    RuntimeError, not an OSError)."""
    import errno

    import faiss

    with atomic_path(path) as tmp:
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:
            raise OSError(errno.EIO, str(exc).splitlines()[0], str(tmp)) from None


def read_index_file(path: str | os.PathLike, mmap: bool = False):
    """A FAISS index file, with a clear error when it is missing, truncated or corrupt. On-disk
    inverted lists are looked up beside the file (the folder may move) and opened read-only;
    ``mmap`` maps in-memory lists from the file instead of reading them."""
    import faiss

    path = Path(path)
    if not path.is_file():
        raise GenembedError(f"{path}: index file not found")
    flags = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY | (faiss.IO_FLAG_MMAP if mmap else 0)
    try:
        with native_stdout_silenced():  # FAISS notes where it found the on-disk lists
            return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise GenembedError(f"{path}: corrupt or unreadable FAISS index ({str(exc).splitlines()[0]})") from None
