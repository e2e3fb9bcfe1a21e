"""A complete, queryable index folder from the add jobs' parts: the merged FAISS index, its id table,
the vectors for re-scoring, the genomes' copies, the genome and contig levels, the traced query
encoder (:mod:`genembed.search.export`), the E-value calibration (:mod:`genembed.search.verify`) and,
written last, the manifest."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from genembed import SCHEMA_VERSION, __version__
from genembed.data.identity import QUERY_FIELDS, ShardIdentity
from genembed.data.io import atomic_path, ensure_space, read_table, write_json
from genembed.data.layout import GenomeInputs
from genembed.data.store import iter_shards
from genembed.data.vectors import normalise
from genembed.data.windows import check_codes
from genembed.encode.plan import RunPlan
from genembed.errors import GenembedError
from genembed.search.export import export_query_model
from genembed.search.index import (
    GENOMES_DIR, INDEX_FILE, IVFDATA_SUFFIX, LEVEL_FILES, LEVELS, MANIFEST_FILE, TABLE_FILE, VECTORS_FILE, IndexManifest,
    IndexSettings, add_part, genome_files, is_ivf, native_stdout_silenced, read_index_file, sequences_file, sidecar,
    train_index, with_ids, write_index_file,
)
from genembed.search.query import Index

log = logging.getLogger(__name__)


def _write_levels(parts: Sequence[str | os.PathLike], out: Path) -> dict[str, int]:
    """The genome and contig vectors of every part, each level as an exact inner-product index of unit
    vectors with its id table (row = id): the genomes' own vectors, never recomputed when a genome is added."""
    import faiss

    table = pl.concat([pl.read_parquet(sequences_file(Path(p))) for p in parts])
    counts = {}
    for level in LEVELS:
        rows = table.filter(pl.col("level") == level)
        x = normalise(np.array(rows["vector"].to_list(), dtype=np.float32)) if rows.height else None
        index = faiss.IndexFlatIP(x.shape[1] if x is not None else 1)
        if x is not None:
            index.add(x)
        faiss_file, table_file = LEVEL_FILES[level]
        write_index_file(index, out / faiss_file)
        with atomic_path(out / table_file) as tmp:
            rows.select("genome", "contig", "windows").write_parquet(tmp)
        counts[level] = rows.height
    return counts


def merge_parts(trained: str | os.PathLike, parts: Sequence[str | os.PathLike], genomes: Sequence[GenomeInputs],
                out_dir: str | os.PathLike, plan: RunPlan, settings: IndexSettings,
                query_model: bool = True) -> dict[str, Any]:
    """Join the genomes' parts into one index; write it with the id table, the manifest, for PQ
    indexes that re-score their hits the vectors of the shards, and (``query_model``) a traced query
    encoder (:mod:`genembed.search.export`) and the calibration of E-values (:mod:`genembed.search.verify`)."""
    import faiss


    info = json.loads(sidecar(Path(trained)).read_text())
    shards, windows = genome_files(genomes)
    check_codes([g.name for g in genomes], "index")
    windows, shards = _by_window_id(windows, shards)
    index = with_ids(read_index_file(trained))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # no index until this one is whole: its manifest comes last
    if is_ivf(index):
        for part in parts:
            if info["factory"] != json.loads(sidecar(Path(part)).read_text())["factory"]:
                raise GenembedError(f"{part}: made from another trained index; rerun its add job")
        _write_ondisk(index, parts, out)
    else:
        if info["family"] == "hnsw":
            for part in parts:
                flat = read_index_file(part)
                index.add_with_ids(flat.index.reconstruct_n(0, flat.ntotal), faiss.vector_to_array(flat.id_map))
        else:
            for part in parts:
                index.merge_from(read_index_file(part))
        write_index_file(index, out / INDEX_FILE)
        _remove_ivfdata(out, keep=None)
    table = pl.concat([pl.scan_parquet(w) for w in windows])
    with atomic_path(out / TABLE_FILE) as tmp:
        table.select("window_id", pl.col("genome", "contig").cast(pl.Categorical), "start", "end").sink_parquet(tmp)
    levels = _write_levels(parts, out)
    rerank = settings.rerank if info["family"] in ("ivfpq", "pq") else 1
    _write_vectors(shards, out / VECTORS_FILE, int(index.ntotal), int(info["dim"]))
    manifest = IndexManifest({
        "schema_version": SCHEMA_VERSION,
        "genembed_version": __version__,
        "faiss_version": faiss.__version__,
        "index": {"factory": info["factory"], "metric": "cosine (inner product of L2-normalised vectors)",
                  "dim": info["dim"], "count": int(index.ntotal), "trained_for": info["trained_for"],
                  "nprobe": settings.nprobe, "ef_search": settings.ef_search,
                  "rerank": rerank},
        "model": plan.to_json(),
        "settings": ShardIdentity.from_attrs(info["identity"]).to_attrs((*QUERY_FIELDS, "precision")),
        "genomes": {g.name: _keep_genome(g, out) for g in genomes},
        "levels": {level: {"count": n, "files": list(LEVEL_FILES[level])} for level, n in levels.items()},
    })
    log.info("indexed %d vectors of dimension %d (%s)", index.ntotal, info["dim"], info["factory"])
    if query_model:  # what queries need: the traced encoder, and the nulls their E-values come from
        export_query_model(out, manifest)
        opened = Index(out, manifest=manifest)
        try:
            for name in manifest["genomes"]:  # the copies verification reads, packed two bits a base
                opened.packed(name)
            opened.calibration()
        finally:
            opened.close()
    write_json(out / MANIFEST_FILE, manifest)  # last: a killed build leaves no folder that looks complete
    return manifest


def _keep_genome(genome: GenomeInputs, out: Path) -> str:
    """Hard-link (else copy) a genome's prepared FASTA and its indexes into the index folder; its path
    there, relative to the folder."""
    import shutil

    rel = Path(GENOMES_DIR) / genome.name / "genome.fa.gz"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".fai", ".gzi"):
        src, dst = Path(f"{genome.fasta}{suffix}"), out / f"{rel}{suffix}"
        if not src.is_file():
            if suffix == ".gzi":  # a plain-gzip-free copy (uncompressed FASTA) has none
                continue
            raise GenembedError(f"{src}: not found (the genome {genome.name} is kept in the index)")
        with atomic_path(dst) as tmp:
            try:
                os.link(src, tmp)
            except OSError:  # another filesystem, or no hard links there
                shutil.copyfile(src, tmp)
    return str(rel)


def _write_ondisk(index, parts: Sequence[str | os.PathLike], out: Path) -> None:
    """Merge IVF parts into inverted lists on disk (FAISS's OnDiskInvertedLists): the lists stream
    from the memory-mapped parts into ``index-<token>.ivfdata``, so neither the merge nor a query
    holds the codes in memory. The index file names its lists file; a fresh name per merge lets the
    index file be replaced atomically, after which older lists files are removed."""
    from faiss.contrib.ondisk import merge_ondisk

    ivfdata = out / f"index-{os.urandom(6).hex()}{IVFDATA_SUFFIX}"
    try:
        with native_stdout_silenced():  # FAISS notes each resize of the lists file
            merge_ondisk(index, [str(p) for p in parts], str(ivfdata))
        write_index_file(index, out / INDEX_FILE)
    except BaseException:
        ivfdata.unlink(missing_ok=True)
        raise
    _remove_ivfdata(out, keep=ivfdata)


def _by_window_id(windows: Sequence[str | os.PathLike], shards: Sequence[str | os.PathLike]) -> tuple[list, list]:
    """The (table, shard) pairs in the order of their first window id. A genome's ids grow with its
    shards and genomes are disjoint id ranges, so the id table comes out sorted by window id and a
    query finds a hit's row by binary search, with no lookup to build."""
    if len(windows) != len(shards):
        raise GenembedError("need one windows table per embedding shard")
    first = [read_table(w, ["window_id"])["window_id"].min() for w in windows]
    order = sorted(range(len(windows)), key=lambda i: (first[i] is None, first[i] or 0))
    return [windows[i] for i in order], [shards[i] for i in order]


def _write_vectors(shards: Sequence[str | os.PathLike], out: Path, count: int, dim: int) -> None:
    """The shards' ``count`` embeddings as one float16 ``.npy`` array, appended shard by shard
    (bounded memory): a query reads only its candidates' rows from it, through a memory map."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
              "shape": (count, dim)}
    ensure_space(out, 2 * count * dim)
    written = 0
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for shard in iter_shards(shards):
            fh.write(np.ascontiguousarray(shard.embeddings, dtype=np.float16).tobytes())
            written += len(shard.embeddings)
        if written != count:
            raise GenembedError(f"{out}: the shards hold {written:,} vectors but the index {count:,}; rerun the add jobs")


def _remove_ivfdata(out: Path, keep: Path | None) -> None:
    for stale in out.glob(f"index-*{IVFDATA_SUFFIX}"):
        if stale != keep:
            stale.unlink()


def build_index(genomes: Sequence[GenomeInputs], out_dir: str | os.PathLike, plan: RunPlan,
                settings: IndexSettings | None = None) -> dict[str, Any]:
    """Train, add (one part per genome) and merge in one go: what the workflow does in separate jobs."""
    settings = settings or IndexSettings()
    with tempfile.TemporaryDirectory() as tmp:
        trained = Path(tmp) / "trained.faiss"
        train_index(genomes, trained, settings, plan)
        parts = [Path(tmp) / f"part{i}.faiss" for i in range(len(genomes))]
        for genome, part in zip(genomes, parts):
            add_part(trained, [genome], part)
        return merge_parts(trained, parts, genomes, out_dir, plan, settings)
