"""Plan genome windows from contig lengths, split them into shards, and materialise one shard's
windows (ids, coordinates, GC and N fractions) as a polars table.

Coordinates are 0-based, half-open (BED). Window ids are stable int64 values:
``(31-bit hash of the genome id) << 32 | ordinal``, where the ordinal numbers every planned
window of the genome in contig order, so ids do not change when other genomes are added.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.genome import Genome
from genembed.data.io import atomic_path

log = logging.getLogger(__name__)

WINDOW_SCHEMA = {
    "window_id": pl.Int64,
    "genome": pl.String,
    "contig": pl.String,
    "start": pl.Int64,
    "end": pl.Int64,
    "gc_fraction": pl.Float32,
    "n_fraction": pl.Float32,
    "shard": pl.Int32,
}
_ORDINAL_BITS = 32
SHARDS_PER_GENOME, MIN_SHARD_SIZE = 500, 2_500  # shard_size: auto


@dataclass(frozen=True)
class WindowSpec:
    """How a genome is cut: window size and stride in bp, N filter, windows per shard."""

    size: int
    stride: int
    max_n_fraction: float = 0.1
    shard_size: int = 10_000

    def __post_init__(self) -> None:
        if self.size < 1 or self.stride < 1 or self.shard_size < 1:
            raise GenembedError(f"window size, stride and shard size must be positive: {self}")
        if not 0 <= self.max_n_fraction <= 1:  # NaN fails this too
            raise GenembedError(f"windows.max_n_fraction must be between 0 and 1, not {self.max_n_fraction}")


@dataclass(frozen=True)
class WindowPlan:
    """The windows a run cuts, as planned once for all its genomes: size and stride in bp (resolved),
    N limit, ``shard_size`` (windows per shard, or ``auto``: sized per genome by :meth:`spec`) and
    ``max_bp``, the longest window the model takes (0 where no model was asked)."""

    size: int = 500
    stride: int = 250
    max_n_fraction: float = 0.1
    shard_size: int | str = "auto"
    max_bp: int = 0

    @classmethod
    def from_config(cls, cfg: dict) -> "WindowPlan":
        """The config's ``windows`` section as given (``stride: auto`` is half the size; other keys ignored)."""
        size = int(cfg["size"])
        return cls(size, stride_of(size, cfg.get("stride", "auto")), float(cfg.get("max_n_fraction", cls.max_n_fraction)),
                   cfg.get("shard_size", "auto"), int(cfg.get("max_bp", 0)))

    @classmethod
    def resolve(cls, cfg: dict, max_bp: int, fits: Callable[[int], bool], model: str, max_tokens: int) -> "WindowPlan":
        """The config's ``windows`` section with ``auto`` sizes resolved from the model: ``size: auto``
        is the longest window the model takes (``max_bp``), ``stride: auto`` half of the size. A window
        whose tokens would not fit (``fits``: a clean window of that many bp fits the model; k-mer counts
        are not monotonic in the length, since leftover bases are single tokens) would be truncated by
        the model, so it is refused, naming both numbers."""
        size = max_bp if cfg.get("size", "auto") == "auto" else int(cfg["size"])
        if max_bp < 1:
            raise GenembedError(f"{model} takes at most {max_tokens} tokens: no window fits beside its special tokens")
        if not fits(size):
            raise GenembedError(
                f"windows.size {size} bp does not fit {model}: it takes at most {max_tokens} tokens, which hold"
                f" {max_bp} bp with this tokenizer; set windows.size to {max_bp} or less (or auto)"
            )
        return cls.from_config({**cfg, "size": size, "max_bp": max_bp})

    def spec(self, contigs: Sequence[tuple[str, int]] | None = None) -> WindowSpec:
        """How a genome with these ``contigs`` is cut. ``shard_size: auto`` gives it about
        ``SHARDS_PER_GENOME`` shards at most, a multiple of ``MIN_SHARD_SIZE`` windows each (2,500 for a
        bacterium, 25,000 for a human genome at 500/250 bp)."""
        shard_size = self.shard_size
        if shard_size == "auto":
            if contigs is None:
                raise GenembedError("windows.shard_size auto is sized per genome: give the genome's contigs")
            wanted = -(-window_count(contigs, WindowSpec(self.size, self.stride)) // SHARDS_PER_GENOME)
            shard_size = max(1, -(-wanted // MIN_SHARD_SIZE)) * MIN_SHARD_SIZE
        return WindowSpec(self.size, self.stride, self.max_n_fraction, int(shard_size))


def stride_of(size: int, stride: int | str) -> int:
    """``windows.stride`` resolved: ``auto`` is half the window size."""
    return max(1, int(size) // 2) if stride == "auto" else int(stride)


GENOME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # as workflow/schemas/genomes.schema.yaml


def check_genome_id(genome: str) -> str:
    """A genome id as the genome sheet allows it (it names folders and files), else refused in one line."""
    if not GENOME_ID.fullmatch(genome):
        shown = genome if len(genome) <= 40 else genome[:37] + "..."
        why = "longer than 128 characters" if len(genome) > 128 else \
            "use letters, digits, '.', '_' and '-', starting with a letter or digit"
        raise GenembedError(f"genome id {shown!r}: not a valid id ({why}); it names the genome's folders")
    return genome


def genome_code(genome: str) -> int:
    """A 31-bit code for a genome id (blake2b), the high bits of its window ids."""
    return int.from_bytes(hashlib.blake2b(genome.encode(), digest_size=4).digest(), "big") >> 1


def check_codes(genomes: Sequence[str], where: str) -> None:
    """Refuse genome ids whose codes (the high bits of their window ids) are equal, naming both."""
    seen: dict[int, str] = {}
    for genome in genomes:
        code = genome_code(str(genome))
        if code in seen and seen[code] != genome:
            raise GenembedError(f"{where}: genome ids {seen[code]} and {genome} hash alike (their window ids would"
                                " collide); rename one")
        seen[code] = genome


def window_ids(genome: str, ordinals: np.ndarray) -> np.ndarray:
    """Stable int64 window ids for ordinals of one genome."""
    return (np.int64(genome_code(genome)) << _ORDINAL_BITS) | ordinals.astype(np.int64)


def split_window_id(window_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`window_ids`: (genome codes, ordinals)."""
    window_id = np.asarray(window_id, dtype=np.int64)
    return window_id >> _ORDINAL_BITS, window_id & ((1 << _ORDINAL_BITS) - 1)


def windows_per_contig(lengths: Sequence[int], spec: WindowSpec) -> np.ndarray:
    """Number of full windows that fit in each contig (windows never run past a contig end)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.where(lengths >= spec.size, (lengths - spec.size) // spec.stride + 1, 0)


def window_count(contigs: Sequence[tuple[str, int]], spec: WindowSpec) -> int:
    """How many windows a genome with these (name, length) contigs has, before N filtering."""
    return int(windows_per_contig([n for _, n in contigs], spec).sum())


def shard_count(contigs: Sequence[tuple[str, int]], spec: WindowSpec, source: str = "genome") -> int:
    """How many shards a genome with these contigs has (known before any window is made).
    A genome without a single window (every contig shorter than one) is refused, naming ``source``."""
    total = window_count(contigs, spec)
    if total == 0 and contigs:
        raise GenembedError(f"{source}: no {spec.size}-bp window fits: every contig is shorter (the longest has"
                            f" {max(n for _, n in contigs):,} bp); lower windows.size")
    if total >= 1 << _ORDINAL_BITS:
        raise GenembedError(f"{total} windows in one genome exceed the id space; use a larger stride")
    return -(-total // spec.shard_size)


@dataclass(frozen=True)
class Segment:
    """Consecutive windows of one contig inside a shard."""

    contig: str
    first_ordinal: int
    starts: np.ndarray  # window starts, bp

    def span(self, size: int) -> tuple[int, int]:
        return int(self.starts[0]), int(self.starts[-1]) + size


def shard_segments(contigs: Sequence[tuple[str, int]], spec: WindowSpec, shard: int) -> list[Segment]:
    """The windows of ``shard``, grouped by contig."""
    counts = windows_per_contig([n for _, n in contigs], spec)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo, hi = shard * spec.shard_size, min((shard + 1) * spec.shard_size, int(offsets[-1]))
    if lo >= hi:
        raise GenembedError(f"shard {shard} is out of range: the genome has {offsets[-1]} windows")
    segments = []
    for i, (name, _) in enumerate(contigs):
        a, b = max(lo, offsets[i]), min(hi, offsets[i + 1])
        if a < b:
            local = np.arange(a - offsets[i], b - offsets[i], dtype=np.int64)
            segments.append(Segment(name, int(a), local * spec.stride))
    return segments


def shard_track_spans(contigs: Sequence[tuple[str, int]], spec: WindowSpec, shard: int) -> dict[str, tuple[int, int]]:
    """The dense-track positions ``shard`` owns, per contig it has windows on: ``[lo, hi)`` from its
    first window's start (0 where it holds the contig's first window) to the next shard's first start
    (the contig's end where it holds the last). Over a genome's shards these spans tile every contig
    that has a window, so each track window is made by exactly one shard job."""
    lengths = dict(contigs)
    counts = dict(zip(lengths, windows_per_contig(list(lengths.values()), spec)))
    spans = {}
    for seg in shard_segments(contigs, spec, shard):
        last = int(seg.starts[-1])
        hi = lengths[seg.contig] if last // spec.stride == counts[seg.contig] - 1 else last + spec.stride
        spans[seg.contig] = (int(seg.starts[0]), int(hi))
    return spans


_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _CODE[_b + 32] = _i


def encode(seq: bytes) -> np.ndarray:
    """Bases as codes 0..3 for A, C, G, T (either case) and 4 for anything else (N, IUPAC codes)."""
    return _CODE[np.frombuffer(seq, dtype=np.uint8)]


def n_fraction(seq: bytes) -> float:
    """Share of bases that are not A, C, G or T (1 for an empty sequence)."""
    return float((encode(seq) == 4).mean()) if seq else 1.0


def kmer_frequencies(seqs: Sequence[bytes], k: int = 4) -> np.ndarray:
    """Frequencies of the 4^k k-mers (A/C/G/T only; k-mers holding other characters are skipped)
    of each sequence; sequences of one length are counted together (:func:`code_kmer_frequencies`)."""
    out = np.zeros((len(seqs), 4**k), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(seqs):
        by_length.setdefault(len(seq), []).append(i)
    for length, rows in by_length.items():
        if length < k:
            continue
        for j in range(0, len(rows), 8192):  # bounded memory: 8192 rows of k-mer ids at a time
            part = rows[j : j + 8192]
            codes = encode(b"".join(seqs[i] for i in part)).reshape(len(part), length)
            out[part] = code_kmer_frequencies(codes, k)
    return out


def code_kmer_frequencies(codes: np.ndarray, k: int = 4) -> np.ndarray:
    """k-mer frequencies of the rows of ``[rows, length]`` base codes (:func:`encode`; k-mers holding a
    4 are skipped), all rows in one pass."""
    rows, length = codes.shape
    if length < k:
        return np.zeros((rows, 4**k), dtype=np.float32)
    ids = np.zeros((rows, length - k + 1), dtype=np.int64)
    bad = np.zeros(ids.shape, dtype=bool)
    for j in range(k):
        part = codes[:, j : j + length - k + 1]
        ids = ids * 4 + np.minimum(part, 3)
        bad |= part == 4
    ids = np.where(bad, 4**k, ids) + (np.arange(rows) * (4**k + 1))[:, None]
    counts = np.bincount(ids.ravel(), minlength=rows * (4**k + 1)).reshape(rows, 4**k + 1)[:, :-1]
    return (counts / np.maximum(counts.sum(1, keepdims=True), 1)).astype(np.float32)


def canonical_kmer_frequencies(seqs: Sequence[bytes], k: int = 4) -> np.ndarray:
    """Strand-canonical k-mer frequencies: each k-mer counted with its reverse complement, one
    column per pair (136 for k = 4, the tetranucleotide frequencies of metagenome binning; 2,080 for
    k = 6), so a sequence and its reverse complement get the same vector."""
    powers = 4 ** np.arange(k - 1, -1, -1)
    codes = np.array(list(itertools.product(range(4), repeat=k)))
    rc = (3 - codes[:, ::-1]) @ powers
    canon = np.minimum(np.arange(4**k), rc)
    columns, column_of = np.unique(canon, return_inverse=True)
    forward = kmer_frequencies(seqs, k)
    out = np.zeros((len(seqs), len(columns)), dtype=np.float32)
    np.add.at(out.T, column_of, forward.T)
    return out


def window_sums(flags: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """How many of ``flags`` are set in each window ``[s, s + size)`` (prefix sums, no loop)."""
    csum = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    return csum[starts + size] - csum[starts]


def shard_windows(genome: str, fasta: Genome, spec: WindowSpec, shard: int) -> pl.DataFrame:
    """The windows of one shard with ids, coordinates, GC and N fractions, N-filtered (one table
    built at the end: a draft assembly's thousands of contigs cost no table each)."""
    contigs = list(fasta.contigs.items())
    segments = shard_segments(contigs, spec, shard)
    n_bases, gc_bases = [], []
    for seg in segments:
        lo, hi = seg.span(spec.size)
        codes = encode(fasta.fetch(seg.contig, lo, hi))
        rel = seg.starts - lo
        n_bases.append(window_sums(codes == 4, rel, spec.size))
        gc_bases.append(window_sums((codes == 1) | (codes == 2), rel, spec.size))
    starts = np.concatenate([seg.starts for seg in segments])
    ordinals = np.concatenate([seg.first_ordinal + np.arange(len(seg.starts)) for seg in segments])
    n, gc = np.concatenate(n_bases), np.concatenate(gc_bases)
    called = spec.size - n
    names = pl.Series([seg.contig for seg in segments], dtype=pl.String)
    table = pl.DataFrame(
        {
            "window_id": window_ids(genome, ordinals),
            "genome": pl.repeat(genome, len(starts), dtype=pl.String, eager=True),
            "contig": names.gather(np.repeat(np.arange(len(segments)), [len(seg.starts) for seg in segments])),
            "start": starts,
            "end": starts + spec.size,
            "gc_fraction": np.where(called > 0, gc / np.maximum(called, 1), np.nan),
            "n_fraction": n / spec.size,
            "shard": pl.repeat(shard, len(starts), dtype=pl.Int32, eager=True),
        },
        schema=WINDOW_SCHEMA,
    )
    return table.filter(pl.col("n_fraction") <= spec.max_n_fraction)


def window_sequences(fasta: Genome, windows: pl.DataFrame) -> Iterator[bytes]:
    """Upper-case sequences of the windows, in table order; one read per run of a contig."""
    contigs = windows["contig"].to_list()
    starts = windows["start"].to_numpy()
    ends = windows["end"].to_numpy()
    i = 0
    while i < len(contigs):
        j = i
        while j + 1 < len(contigs) and contigs[j + 1] == contigs[i] and starts[j + 1] >= starts[j]:
            j += 1
        lo, hi = int(starts[i]), int(ends[i : j + 1].max())
        block = fasta.fetch(contigs[i], lo, hi)
        for k in range(i, j + 1):
            yield block[starts[k] - lo : ends[k] - lo]
        i = j + 1


def write_shard_windows(genome: str, fasta: str | Path, spec: WindowSpec, shard: int, out: str | Path,
                        fits: Callable[[list[bytes]], np.ndarray] | None = None) -> int:
    """Stage: write one shard's windows as Parquet (atomically); returns the window count.

    ``fits`` (see :func:`genembed.encode.tokenize.token_fit`) says which sequences the model takes: windows
    holding ambiguity codes, which a k-mer tokenizer reads one base per token, are dropped (and
    counted in the log) when they would make more tokens than that, like windows over the N limit."""
    g = Genome(Path(fasta))
    try:
        table = shard_windows(genome, g, spec, shard)
        if fits is not None:
            dirty = table.filter(pl.col("n_fraction") > 0)
            if dirty.height:
                too_long = dirty.filter(~pl.Series(fits(list(window_sequences(g, dirty)))))["window_id"]
                if len(too_long):
                    log.info("%s shard %d: %d windows dropped: their ambiguity codes make more tokens than the model"
                             " takes", genome, shard, len(too_long))
                    table = table.filter(~pl.col("window_id").is_in(too_long.implode()))
    finally:
        g.close()
    with atomic_path(out) as tmp:
        table.write_parquet(tmp)
    return len(table)


def mutate(tail: bytes, size: int, rate: float, indel_share: float, rng: np.random.Generator) -> bytes:
    """A copy of ``tail[:size]`` with substitutions at ``rate`` per base (always to another base)
    and insertions/deletions of 1-3 bp at ``rate * indel_share`` per base, cut back to ``size`` bp
    (deletions pull in the bases after the window)."""
    seq = bytearray(tail)
    subs = np.flatnonzero(rng.random(len(seq)) < rate)
    for i in subs:
        seq[i] = b"ACGT"[(b"ACGT".find(seq[i]) + int(rng.integers(1, 4))) % 4] if seq[i] in b"ACGT" else seq[i]
    events = np.flatnonzero(rng.random(size) < rate * indel_share)
    for i in events[::-1]:  # right to left, so earlier positions stay valid
        length = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            del seq[i : i + length]
        else:
            seq[i:i] = bytes(b"ACGT"[j] for j in rng.integers(0, 4, length))
    return bytes(seq[:size])


def gc_content(seqs: Sequence[bytes]) -> np.ndarray:
    """GC fraction of the called bases, as a column vector."""
    out = np.zeros((len(seqs), 1), dtype=np.float32)
    for i, seq in enumerate(seqs):
        codes = encode(seq)
        called = (codes < 4).sum()
        out[i, 0] = ((codes == 1) | (codes == 2)).sum() / max(called, 1)
    return out
