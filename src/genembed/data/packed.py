"""Genome copies packed two bits a base, for verification's random reads.

An index keeps each genome as the run prepared it (bgzip + faidx), and reading 2.4 kb from it
inflates a whole 64-kB block: 0.24 ms, a tenth of a 2-kb query's search on a 100-Mbp index, where
verification reads 20 stretches per query. Beside each copy the index keeps the same sequence
packed (A, C, G, T in two bits, contigs byte-aligned, runs of any other letter listed as N), a
quarter of a byte per base, memory-mapped: a read is a slice and a table lookup (about 10 us).
It is made when the index is built, or at the first verification of an index made before.

Alignment scores every letter other than A, C, G and T as 0, so reading IUPAC codes as N changes
no alignment. The pack names the size and time of the copy it was made from and is refused (and
remade where the folder is writable) when the copy changed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genembed.data.io import atomic_path, write_json
from genembed.data.windows import encode

if TYPE_CHECKING:
    from genembed.data.genome import Genome

log = logging.getLogger(__name__)
VERSION = 1
SUFFIX, INFO_SUFFIX = ".packed", ".packed.json"
_UNPACK = np.frombuffer(b"ACGT", dtype=np.uint8)[
    (np.arange(256, dtype=np.uint8)[:, None] >> np.array([6, 4, 2, 0], dtype=np.uint8)) & 3]  # byte -> 4 bases


class PackedGenome:
    """Read access to a packed genome: ``fetch(contig, start, end)`` as :meth:`Genome.fetch`, with
    every letter other than A, C, G and T read as N."""

    def __init__(self, path: Path, info: dict):
        self.path = path
        self.contigs = {name: (int(offset), int(length)) for name, (offset, length) in info["contigs"].items()}
        self.n_runs = {name: np.asarray(runs, dtype=np.int64).reshape(-1, 2) for name, runs in info["n_runs"].items()}
        self.bits = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)

    @classmethod
    def open(cls, fasta: Path) -> "PackedGenome | None":
        """The pack beside a genome copy, or None where there is none or it was made from another copy."""
        path, info_path = Path(f"{fasta}{SUFFIX}"), Path(f"{fasta}{INFO_SUFFIX}")
        try:
            info = json.loads(info_path.read_text())
            if info.get("version") != VERSION or info.get("source") != _stamp(fasta):
                return None
            return cls(path, info)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def fetch(self, contig: str, start: int, end: int) -> bytes:
        offset, length = self.contigs[contig]
        start, end = max(0, start), min(end, length)
        if start >= end:
            return b""
        first = offset + start // 4
        seq = _UNPACK[self.bits[first : offset + (end + 3) // 4]].reshape(-1)[start % 4 : start % 4 + end - start]
        runs = self.n_runs.get(contig)
        if runs is not None and len(runs):
            lo, hi = np.searchsorted(runs[:, 1], start, side="right"), np.searchsorted(runs[:, 0], end)
            for a, b in runs[lo:hi]:
                seq[max(a, start) - start : min(b, end) - start] = ord("N")
        return seq.tobytes()


def pack(genome: "Genome") -> PackedGenome:
    """Pack a genome copy beside it (written atomically) and open the pack."""
    fasta = Path(genome.path)
    contigs, n_runs, offset = {}, {}, 0
    with atomic_path(Path(f"{fasta}{SUFFIX}")) as tmp, open(tmp, "wb") as out:
        for name, length in genome.contigs.items():
            codes = encode(genome.fetch(name, 0, length))
            other = np.flatnonzero(np.diff(np.concatenate([[0], (codes == 4).astype(np.int8), [0]])))
            n_runs[name] = other.reshape(-1, 2).tolist()
            codes = np.concatenate([codes & 3, np.zeros(-length % 4, dtype=np.uint8)]).reshape(-1, 4)
            out.write(((codes[:, 0] << 6) | (codes[:, 1] << 4) | (codes[:, 2] << 2) | codes[:, 3]).astype(np.uint8).tobytes())
            contigs[name] = (offset, length)
            offset += len(codes)
    info = {"version": VERSION, "source": _stamp(fasta), "contigs": contigs, "n_runs": n_runs}
    write_json(Path(f"{fasta}{INFO_SUFFIX}"), info)
    return PackedGenome(Path(f"{fasta}{SUFFIX}"), info)


def _stamp(fasta: Path) -> list[int]:
    st = fasta.stat()
    return [st.st_size, st.st_mtime_ns]


def packed(genome: "Genome") -> PackedGenome | None:
    """The genome copy's pack: opened, else made where its folder is writable, else None (reads
    then go to the copy itself)."""
    found = PackedGenome.open(Path(genome.path))
    if found is not None:
        return found
    try:
        return pack(genome)
    except OSError as exc:
        log.info("%s: not packed for verification (%s); its stretches are read from the FASTA", genome.path, exc)
        return None
