"""Embedding shards as self-describing HDF5 files.

Layout of one shard (``encoding-type = genembed-embeddings``):
- ``embeddings``: float16 ``[n, d]``, chunked by rows;
- ``window_id``: int64 ``[n]``, the windows in the same order as the shard's Parquet table;
- attrs: model id, fingerprint, revision, tokenizer, pooling, layer, window size and stride,
  precision, schema version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import h5py
import numpy as np

from genembed import SCHEMA_VERSION, __version__
from genembed.errors import GenembedError
from genembed.data.identity import INDEX_FIELDS, QUERY_FIELDS, ShardIdentity
from genembed.data.io import atomic_path, ensure_space, read_table
from genembed.data.layout import GenomeInputs
from genembed.data.vectors import SequenceVectors, VectorSums, normalise, read_sequence_group, write_sequence_group

if TYPE_CHECKING:
    import polars as pl

ENCODING_TYPE = "genembed-embeddings"


@dataclass
class Shard:
    """One shard read back: window ids, float16 embeddings and the attrs describing them."""

    window_id: np.ndarray
    embeddings: np.ndarray
    attrs: dict[str, Any]


def write_shard(path: str | os.PathLike, embeddings: np.ndarray, window_id: np.ndarray,
                attrs: dict[str, Any]) -> None:
    """Write a shard atomically (temporary file, then rename)."""
    if len(embeddings) != len(window_id):
        raise ValueError("embeddings and window ids differ in length")
    embeddings = embeddings.astype(np.float16)
    bad = ~np.isfinite(embeddings).all(1) if embeddings.ndim == 2 else np.zeros(0, dtype=bool)
    if bad.any():
        advice = ("The model computed them in float32, so this is no overflow of reduced precision: check the model"
                  if str(attrs.get("precision")) == "float32" else
                  "An overflow in reduced precision: try embed.precision: fp32, or another layer/pooling")
        raise GenembedError(
            f"{path}: {int(bad.sum())} of {len(bad)} windows embed to NaN or infinity in float16 (window ids"
            f" {', '.join(map(str, window_id[bad][:3]))}...); nothing written. {advice}")
    ensure_space(path, embeddings.nbytes + window_id.nbytes + (64 << 10))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n, d = embeddings.shape
            f.create_dataset("embeddings", data=embeddings,
                             chunks=(max(1, min(n, 4096)), d) if n else None)
            f.create_dataset("window_id", data=window_id.astype(np.int64))
            f.attrs.update({k: ("" if v is None else v) for k, v in attrs.items()})
            f.attrs["encoding-type"] = ENCODING_TYPE
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["genembed_version"] = __version__


TRACK_ENCODING = "genembed-track"


def write_track(path: str | os.PathLike, embeddings: np.ndarray, windows: "pl.DataFrame", attrs: dict[str, Any]) -> None:
    """Write a dense track's window vectors atomically: ``embeddings`` float16 ``[n, d]``, the
    windows' ``start`` and ``contig`` (an index into ``contigs``), and the attrs that made them."""
    embeddings = embeddings.astype(np.float16)
    if embeddings.size and not np.isfinite(embeddings).all():
        raise GenembedError(f"{path}: track windows embed to NaN or infinity in float16; nothing written. An overflow"
                            " in reduced precision: try embed.precision: fp32")
    names, codes = np.unique(windows["contig"].to_numpy().astype(str), return_inverse=True)
    ensure_space(path, embeddings.nbytes + windows.height * 12 + (64 << 10))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            n, d = embeddings.shape
            f.create_dataset("embeddings", data=embeddings, chunks=(max(1, min(n, 4096)), d) if n else None)
            f.create_dataset("start", data=windows["start"].to_numpy().astype(np.int64))
            f.create_dataset("contig", data=codes.astype(np.int32))
            f.create_dataset("contigs", data=names.astype(object), dtype=h5py.string_dtype())
            f.attrs.update({k: ("" if v is None else v) for k, v in attrs.items()})
            f.attrs["encoding-type"] = TRACK_ENCODING
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["genembed_version"] = __version__


def track_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The attrs of a track file (:func:`write_track`), read without its vectors."""
    return _attrs(path, TRACK_ENCODING, "a genembed track file", "track file")


def read_track(path: str | os.PathLike) -> tuple["pl.DataFrame", np.ndarray, dict[str, Any]]:
    """A dense track written by :func:`write_track`: its windows (contig, start, end), float32
    vectors and attrs; refused, naming the file, when it is not one or is cut short."""
    import polars as pl

    attrs = track_attrs(path)
    try:
        with h5py.File(path, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else n for n in f["contigs"][:]]
            starts, codes, vectors = f["start"][:], f["contig"][:], f["embeddings"][:].astype(np.float32)
        size = int(attrs["window_size"])
    except (OSError, KeyError, ValueError) as exc:
        raise _corrupt(path, exc) from None
    windows = pl.DataFrame({"contig": pl.Series(names, dtype=pl.String).gather(codes), "start": starts,
                            "end": starts + size})
    return windows, vectors, attrs


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    return _attrs(path, ENCODING_TYPE, "a genembed embedding shard", "shard")


def _attrs(path: str | os.PathLike, encoding: str, what: str, kind: str) -> dict[str, Any]:
    """A genembed HDF5 file's attrs; refused, naming it, when it is unreadable or not of this ``encoding``."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("encoding-type") != encoding:
                raise GenembedError(f"{path}: not {what}")
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise GenembedError(f"{path}: cannot read HDF5 {kind} ({exc})") from None


def is_complete(path: str | os.PathLike, attrs: dict[str, Any]) -> bool:
    """True when ``path`` is a readable shard made with these attrs (so a rerun may keep it)."""
    try:
        found = read_attrs(path)
    except (GenembedError, FileNotFoundError):
        return False
    if ShardIdentity.from_attrs(found).diff(ShardIdentity.from_attrs(attrs)):
        return False
    return all(str(found.get(k)) == str("" if v is None else v) for k, v in attrs.items() if k not in INDEX_FIELDS)


def read_shard(path: str | os.PathLike) -> Shard:
    """A shard's ids, embeddings and attrs; refused, naming it, when unreadable or not finite."""
    attrs = read_attrs(path)
    try:
        with h5py.File(path, "r") as f:
            shard = Shard(f["window_id"][:], f["embeddings"][:], attrs)
    except (OSError, KeyError) as exc:
        raise _corrupt(path, exc) from None
    if shard.embeddings.size and not np.isfinite(shard.embeddings).all():
        n = int((~np.isfinite(shard.embeddings).all(1)).sum())
        raise GenembedError(f"{path}: {n} windows have NaN or infinite embeddings; delete the shard and re-embed it")
    return shard


def read_rows(path: str | os.PathLike, rows: np.ndarray) -> np.ndarray:
    """Float32 embeddings of some rows of a shard (``rows`` ascending), read without the rest."""
    try:
        with h5py.File(path, "r") as f:
            out = f["embeddings"][np.asarray(rows, dtype=np.int64)].astype(np.float32)
    except (OSError, KeyError) as exc:
        raise _corrupt(path, exc) from None
    if not np.isfinite(out).all():
        raise GenembedError(f"{path}: windows with NaN or infinite embeddings; delete the shard and re-embed it")
    return out


def _corrupt(path: str | os.PathLike, exc: Exception) -> GenembedError:
    return GenembedError(f"{path}: truncated or corrupt shard ({str(exc).splitlines()[0]}); delete it and rerun")


def iter_shards(paths: Iterable[str | os.PathLike]) -> Iterator[Shard]:
    """Read shards one at a time (memory bounded by one shard)."""
    for path in paths:
        yield read_shard(path)


def check_consistent(paths: list[str | os.PathLike], names: tuple[str, ...] = QUERY_FIELDS) -> ShardIdentity:
    """Refuse shards whose identities differ in ``names`` (model, pooling...; naming the first field
    that differs); return the first shard's identity."""
    first: ShardIdentity | None = None
    for path in paths:
        found = ShardIdentity.from_attrs(read_attrs(path))
        if first is None:
            first = found
            continue
        for key in found.diff(first, names)[:1]:
            raise GenembedError(f"{path}: {key} is {getattr(found, key)!r} but {paths[0]} has {getattr(first, key)!r};"
                                " re-embed")
    if first is None:
        raise GenembedError("no embedding shards given")
    return first


def stitch(shards: list[str | os.PathLike], out: str | os.PathLike, windows: list[str | os.PathLike] | None = None,
           genome: str | None = None) -> int:
    """One HDF5 file per genome whose ``embeddings`` and ``window_id`` are virtual datasets over
    the shards (nothing copied; plain h5py reads them). Shard paths are stored relative to ``out``,
    so the results folder can move as a whole. With the shards' ``windows`` tables, the genome's
    genome and contig vectors (:func:`window_set_vectors`) go into its ``sequences``
    group. Returns the number of windows."""
    if not shards:
        raise GenembedError(f"{out}: no shards to stitch")
    check_consistent(list(shards))
    sources = [os.path.relpath(Path(p).resolve(), Path(out).resolve().parent) for p in shards]
    sizes, dim = [], None
    for path in shards:
        try:
            with h5py.File(path, "r") as f:
                sizes.append(f["window_id"].shape[0])
                dim = f["embeddings"].shape[1] if f["embeddings"].ndim == 2 and sizes[-1] else dim
                f["embeddings"][-1:], f["window_id"][-1:]  # touch the last rows: a cut-short file fails here
        except (OSError, KeyError) as exc:
            raise _corrupt(path, exc) from None
    if dim is None:
        raise GenembedError(f"{out}: every shard is empty")
    total = int(sum(sizes))
    emb = h5py.VirtualLayout(shape=(total, dim), dtype=np.float16)
    ids = h5py.VirtualLayout(shape=(total,), dtype=np.int64)
    row = 0
    for rel, n in zip(sources, sizes):
        if n == 0:
            continue
        emb[row : row + n] = h5py.VirtualSource(rel, "embeddings", shape=(n, dim))
        ids[row : row + n] = h5py.VirtualSource(rel, "window_id", shape=(n,))
        row += n
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w", libver="latest") as f:
            f.create_virtual_dataset("embeddings", emb)
            f.create_virtual_dataset("window_id", ids)
            f.attrs.update(read_attrs(shards[0]))
            f.attrs["shards"] = sources
            if windows is not None:
                name = genome or Path(windows[0]).parent.name  # the layout's windows/{genome}/ folder
                write_sequence_group(f.create_group("sequences"),
                                     window_set_vectors(name, [Path(w) for w in windows], [Path(s) for s in shards]))
    return total


def sequence_vectors(genome: GenomeInputs) -> SequenceVectors:
    """The mean of the unit-normalised window vectors of each contig and of the whole genome: as stored
    with the genome's stitched file (``all.h5``, :func:`genembed.data.store.stitch`) when that file was made
    from exactly these shards and is not older than any of them, else read shard by shard (memory: one shard)."""
    return stored_vectors(genome) or window_set_vectors(genome.name, genome.windows, genome.shards)


def stored_vectors(genome: GenomeInputs) -> SequenceVectors | None:
    """The genome's vectors from its stitched file, or None where there are none to trust."""
    import h5py

    if not genome.shards:
        return None
    stitched = Path(genome.shards[0]).parent / "all.h5"
    try:
        if stitched.stat().st_mtime < max(Path(s).stat().st_mtime for s in genome.shards):
            return None
        with h5py.File(stitched, "r") as f:
            made_from = [(stitched.parent / str(p)).resolve() for p in f.attrs.get("shards", [])]
            if "sequences" not in f or made_from != [Path(s).resolve() for s in genome.shards]:
                return None
            v = read_sequence_group(f["sequences"])
    except (OSError, KeyError):
        return None
    return SequenceVectors(genome.name, v.vector, v.contigs, v.contig_vectors)


def window_set_vectors(name: str, windows_files: Sequence[Path], shards: Sequence[Path]) -> SequenceVectors:
    """:func:`sequence_vectors` of a genome's window tables and shards (in shard order)."""
    sums = VectorSums()
    for windows, shard in zip(windows_files, shards):
        table = read_table(windows, ["window_id", "contig"])
        s = read_shard(shard)
        if not np.array_equal(table["window_id"].to_numpy(), s.window_id):
            raise GenembedError(f"{windows}: window ids differ from those in {shard}")
        sums.add(table["contig"].to_numpy(), s.embeddings)
    return sums.vectors(name)


def unit_windows(genome: GenomeInputs) -> np.ndarray:
    """All of a genome's window vectors, unit-normalised (float16, as stored)."""
    parts = [normalise(read_shard(s).embeddings).astype(np.float16) for s in genome.shards]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float16)
