"""Genome FASTA input: validate and normalise any FASTA (plain, gzip, bgzip) into an indexed
bgzip copy, and read sequence from it by region."""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import pysam

from genembed.errors import GenembedError
from genembed.data.io import check_input, missing_folders, open_text, remove_empty, remove_stale_temporaries

#: IUPAC nucleotide codes accepted in genome FASTA (either case).
IUPAC = b"ACGTNRYSWKMBDHVacgtnryswkmbdhv"
_LINE = 80
_BLOCK = 1 << 24


class _Writer:
    """Writes records as bgzip FASTA with fixed-width lines (what faidx needs)."""

    def __init__(self, path: Path):
        self.fh = pysam.BGZFile(str(path), "wb")
        self.pending = bytearray()

    def header(self, name: bytes) -> None:
        self.fh.write(b">" + name + b"\n")

    def sequence(self, seq: bytes, final: bool = False) -> None:
        self.pending += seq
        n = len(self.pending) if final else len(self.pending) // _LINE * _LINE
        if n:
            view = bytes(self.pending[:n])
            self.fh.write(b"\n".join(view[i : i + _LINE] for i in range(0, n, _LINE)) + b"\n")
            del self.pending[:n]

    def close(self) -> None:
        self.fh.close()


def prepare_fasta(src: str | os.PathLike, dst: str | os.PathLike) -> list[tuple[str, int]]:
    """Validate ``src`` and write it as bgzip FASTA ``dst`` with ``.fai``/``.gzi`` indexes.

    Returns the contigs and their lengths. Raises :class:`GenembedError` with the file and line
    for a missing file, truncated gzip, sequence before a header, an empty record, a duplicate
    contig name or a character outside the IUPAC nucleotide codes.
    """
    src, dst = Path(src), Path(dst)
    check_input(src, "FASTA file")
    made = missing_folders(dst.parent)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp_index = [Path(f"{tmp}.fai"), Path(f"{tmp}.gzi")]
    try:
        contigs = _copy_validated(src, tmp)
        _check_sidecar(src, contigs)
        pysam.faidx(str(tmp))
        for part, suffix in zip(tmp_index, (".fai", ".gzi")):
            os.replace(part, f"{dst}{suffix}")
        os.replace(tmp, dst)
    finally:
        for leftover in [tmp, *tmp_index]:
            leftover.unlink(missing_ok=True)
        if not dst.is_file():  # failed: no folder of ours left behind
            remove_empty(made)
    return contigs


def sidecar_fai(fasta: str | os.PathLike) -> Path | None:
    """The samtools index shipped beside a FASTA (``genome.fa.fai``, ``genome.fa.gz.fai``), if any:
    it lets the workflow plan a genome's shards before the genome is prepared (also in a dry-run)."""
    path = Path(f"{fasta}.fai")
    return path if path.is_file() else None


def _check_sidecar(src: Path, contigs: list[tuple[str, int]]) -> None:
    """Refuse a ``.fai`` beside ``src`` that disagrees with it (the shards were planned from it)."""
    fai = sidecar_fai(src)
    if fai is None:
        return
    planned = read_fai(fai)
    if planned != contigs:
        diff = next(((a, b) for a, b in zip(planned, contigs) if a != b), None)
        detail = (f"it has {diff[0][0]} {diff[0][1]:,} bp, the FASTA {diff[1][0]} {diff[1][1]:,} bp" if diff
                  else f"it lists {len(planned)} contigs, the FASTA has {len(contigs)}")
        raise GenembedError(f"{fai}: does not match {src.name} ({detail}); delete or regenerate it (samtools faidx)")


def _copy_validated(src: Path, out: Path) -> list[tuple[str, int]]:
    contigs: list[tuple[str, int]] = []
    seen: set[str] = set()
    writer = _Writer(out)
    line = 1  # line number of the start of the chunk being processed
    carry = b""
    delete = IUPAC + b"\r\n \t"
    called = 0  # A, C, G, T (either case)
    line_seen = False

    def close_record() -> None:
        if contigs and contigs[-1][1] == 0:
            raise GenembedError(f"{src}: record '{contigs[-1][0]}' has no sequence")
        if contigs:
            writer.sequence(b"", final=True)

    try:
        with open_text(src) as fh:
            while True:
                data = fh.read(_BLOCK)
                if data.endswith(b"\r"):  # keep a CR LF pair in one block
                    data += fh.read(1)
                if not line_seen:
                    data, line_seen = data.removeprefix(b"\xef\xbb\xbf"), True  # a UTF-8 byte-order mark
                data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # CR LF and old-Mac CR line ends
                buf = carry + data
                if data:
                    cut = buf.rfind(b"\n") + 1
                    if cut == 0:
                        carry = buf
                        continue
                    buf, carry = buf[:cut], buf[cut:]
                else:
                    carry = b""
                pos = 0
                while pos < len(buf):
                    if buf[pos] == 0x3E:  # '>'
                        eol = buf.find(b"\n", pos)
                        eol = len(buf) if eol < 0 else eol
                        name = buf[pos + 1 : eol].strip().split(maxsplit=1)
                        if not name:
                            raise GenembedError(f"{src}: line {line}: header without a contig name")
                        close_record()
                        contig = name[0].decode(errors="replace")
                        if contig in seen:
                            raise GenembedError(f"{src}: line {line}: duplicate contig name '{contig}'")
                        seen.add(contig)
                        contigs.append((contig, 0))
                        writer.header(name[0])
                        line += 1
                        pos = eol + 1
                        continue
                    end = buf.find(b"\n>", pos)
                    end = len(buf) if end < 0 else end + 1
                    chunk = buf[pos:end]
                    bad = chunk.translate(None, delete)
                    if bad:
                        at = chunk.find(bad[:1])
                        where = line + chunk.count(b"\n", 0, at)
                        raise GenembedError(
                            f"{src}: line {where}: invalid character {bad[:1].decode(errors='replace')!r}"
                            " (not an IUPAC nucleotide code)"
                        )
                    seq = chunk.translate(None, b"\r\n \t")
                    called += len(seq) - len(seq.translate(None, b"ACGTacgt"))
                    if seq:
                        if not contigs:
                            raise GenembedError(f"{src}: line {line}: sequence before the first '>' header")
                        writer.sequence(seq)
                        name, length = contigs[-1]
                        contigs[-1] = (name, length + len(seq))
                    line += chunk.count(b"\n")
                    pos = end
                if not data:
                    break
        if not contigs:
            raise GenembedError(f"{src}: no FASTA records found")
        close_record()
        if called == 0:
            raise GenembedError(f"{src}: no A, C, G or T in any record (only N or other ambiguity codes)")
    except PermissionError:
        raise GenembedError(f"{src}: permission denied (cannot read the FASTA file)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise GenembedError(f"{src}: cannot read compressed file ({exc}); is it truncated?") from None
    except OSError as exc:
        raise GenembedError(f"{src}: cannot read the FASTA file ({exc.strerror or exc})") from None
    finally:
        writer.close()
    return contigs


def read_fai(fai: str | os.PathLike) -> list[tuple[str, int]]:
    """Contig names and lengths from a samtools ``.fai`` index (refused, naming it, when it is not one)."""
    out = []
    try:
        with open(fai) as fh:
            for row in fh:
                name, length = row.split("\t")[:2]
                out.append((name, int(length)))
    except (ValueError, UnicodeDecodeError):
        raise GenembedError(f"{fai}: not a samtools .fai index (name and length per line); delete it") from None
    except OSError as exc:
        raise GenembedError(f"{fai}: cannot read ({exc.strerror or exc})") from None
    if not out:
        raise GenembedError(f"{fai}: empty .fai index; delete it")
    return out


@dataclass
class Genome:
    """Random access to a prepared (bgzip + faidx) genome; sequence comes back upper-case."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._fasta = pysam.FastaFile(str(self.path))
        self.contigs: dict[str, int] = dict(zip(self._fasta.references, self._fasta.lengths))

    def fetch(self, contig: str, start: int, end: int) -> bytes:
        """Upper-case sequence of ``contig[start:end]`` (0-based, half-open)."""
        length = self.contigs.get(contig)
        if length is None:
            raise GenembedError(f"{self.path}: unknown contig '{contig}'")
        if not 0 <= start < end <= length:
            raise GenembedError(f"{self.path}: region {contig}:{start}-{end} is outside 0-{length}")
        return self._fasta.fetch(contig, start, end).upper().encode()

    def close(self) -> None:
        self._fasta.close()
