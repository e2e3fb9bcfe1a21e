"""Loci an index can vouch for: candidates from the embedding search verified by alignment
(:mod:`genembed.search.align`), and E-values calibrated on queries that have no homolog.

Two nulls are fitted once per index, on shuffled sequence (so a shuffled query is, by construction,
what they describe), when the index is built (an index built by an older genembed: at its first
query), and kept in it as ``calibration.json``; refitted when the index or its model changes, and
kept in memory only when the folder is read-only:

- **embedding:** the best cosine of shuffled indexed windows among all indexed windows, a Gumbel
  (:class:`genembed.search.loci.EmbeddingNull`); a locus's E-value combines its windows' scores
  (:func:`genembed.search.loci.chain_evalue`).
- **alignment:** lambda and K of the alignment scores (:func:`genembed.search.align.fit_significance`),
  shuffled genome pieces against real ones; an aligned locus's E-value is Karlin and Altschul's
  ``K m N exp(-lambda S)``, N being both strands of the indexed sequence.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, NamedTuple

import numpy as np
import polars as pl

from genembed.search.align import BLASTN, Aligner, Significance, cigar_counts, fit_significance
from genembed.data.io import write_json
from genembed.search.loci import ALIGNMENT_SCHEMA, LOCUS_COLUMNS, EmbeddingNull, overlapping, primary, unverified
from genembed.encode.tokenize import reverse_complement

if TYPE_CHECKING:
    from genembed.search.query import Index, Region

log = logging.getLogger(__name__)
CALIBRATION_FILE = "calibration.json"
CALIBRATION_VERSION = 1
VERIFY_EVALUE = 0.01  # an alignment at least this significant verifies a locus
MAX_VERIFY_BP = 20_000  # longer queries are not aligned (traceback memory grows as the square)
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Calibration:
    embedding: EmbeddingNull
    alignment: Significance


def calibration(index: "Index", samples: int = 500, pairs: int = 300) -> Calibration:
    """The index's nulls: read from ``calibration.json`` when it was made for this index and model,
    else fitted (a few seconds) and saved there when the folder is writable."""
    key = {"version": CALIBRATION_VERSION, "fingerprint": index.manifest.plan.fingerprint,
           "windows": int(index.searcher.faiss.ntotal), "scoring": list(vars(BLASTN).values()),
           "samples": samples, "pairs": pairs}
    path = index.dir / CALIBRATION_FILE
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return Calibration(EmbeddingNull(**saved["embedding"]), Significance(**saved["alignment"]))
    except (OSError, ValueError, TypeError, KeyError):
        pass
    rng = np.random.default_rng(0)
    table = index.searcher.table
    wanted = 4 * samples + 2 * pairs  # a small index lends its windows more than once (each is shuffled anew)
    rows = rng.choice(table.height, wanted, replace=table.height < wanted)
    pieces = [(g, c, int(s)) for g, c, s in table[rows].select("genome", "contig", "start").iter_rows()]
    size = int(index.manifest["settings"]["window_size"])
    stride = int(index.manifest["settings"]["window_stride"])
    embedding = _embedding_null(index, pieces[: 4 * samples], size, samples, rng)
    seqs = [_fetch(index, g, c, s, 2000) for g, c, s in pieces[4 * samples:]]
    queries = [_shuffled(x[:1000], rng) for x in seqs[:pairs]]
    targets = seqs[pairs:] + seqs[: max(0, 2 * pairs - len(seqs))]
    fit = fit_significance(queries, targets[:pairs])
    alignment = Significance(fit.lam, fit.k, 2 * int(index.searcher.faiss.ntotal) * stride)
    result = Calibration(embedding, alignment)
    try:
        write_json(path, {"key": key, "embedding": vars(embedding), "alignment": vars(alignment)})
    except OSError as exc:
        log.info("calibration not saved beside the index (%s); it is refitted by each process", exc)
    return result


def _fetch(index: "Index", genome: str, contig: str, start: int, length: int) -> bytes:
    g = index.genome(genome)
    return g.fetch(contig, start, min(start + length, g.contigs[contig])).upper()


def _shuffled(seq: bytes, rng: np.random.Generator) -> bytes:
    a = np.frombuffer(seq, dtype=np.uint8).copy()
    rng.shuffle(a)
    return a.tobytes()


def _embedding_null(index: "Index", pieces: list[tuple[str, str, int]], size: int, samples: int,
                    rng: np.random.Generator) -> EmbeddingNull:
    """Gumbel fit to the best score of ``samples`` shuffled indexed windows (searched as a query
    window is: with its reverse complement when the model tells strands apart)."""
    seqs = []
    for g, c, s in pieces:
        seq = _shuffled(_fetch(index, g, c, s, size), rng)
        if len(seq) == size and index.encoder.problem(seq) is None:
            seqs.append(seq)
        if len(seqs) == samples:
            break
    names = [str(i) for i in range(len(seqs))]
    best = index.searcher.search(names, index.encoder.embed(seqs), 1).sort("query")["score"].to_numpy()
    return EmbeddingNull.fit(best)


def verify(index: "Index", loci: pl.DataFrame, queries: Mapping[str, bytes], k: int,
           exclude: Mapping[str, "Region"] | None = None, evalue: float = VERIFY_EVALUE) -> pl.DataFrame:
    """Candidate loci (``chain``'s columns) aligned: a locus whose alignment has an E-value at most
    ``evalue`` is ``verified`` and takes the alignment's exact coordinates, strand, counts and
    E-value; the others keep the embedding's. Per query, verified loci rank first, by alignment
    score, then the others by embedding score; a locus overlapping a better one by half is dropped,
    and the best ``k`` are kept."""
    if loci.is_empty():
        return unverified(loci)
    sig = index.calibration().alignment
    # stretches come from the packed copies (a slice each); where a genome has none (an older index
    # in a read-only folder), from its FASTA copy, a contig with many candidates read whole, once
    # (reading 10 kb of it costs about one fetch)
    packs = {g: index.packed(g) for g in loci["genome"].unique().to_list()}
    many = loci.group_by("genome", "contig").len().rows()
    whole = {(g, c): index.genome(g).fetch(c, 0, index.genome(g).contigs[c]) for g, c, n in many
             if packs[g] is None and n * 10_000 >= index.genome(g).contigs[c]}

    def read(genome: str, contig: str, lo: int, hi: int) -> bytes:
        if packs[genome] is not None:
            return packs[genome].fetch(contig, lo, hi)
        if (genome, contig) in whole:
            return whole[genome, contig][lo:hi]
        return index.genome(genome).fetch(contig, lo, hi)

    todo: dict[str, list[tuple[dict, int, bytes]]] = {}  # per query: its candidates, their stretches of genome
    for row in loci.iter_rows(named=True):
        query = queries[row["query"]]
        if len(query) <= MAX_VERIFY_BP:
            lo, hi = _stretch(index, row, len(query))
            todo.setdefault(row["query"], []).append((row, lo, read(row["genome"], row["contig"], lo, hi)))
    local = threading.local()

    def align(name: str) -> list[dict | None | bool]:  # one query's candidates, in a worker thread (parasail frees the GIL)
        """Per candidate: its alignment; None where it is not significant; False where it is but,
        below k distinct better loci, cannot be shown (not traced back)."""
        if not hasattr(local, "aligner"):
            local.aligner = Aligner()
        query = queries[name]
        scored = [_score(index, local.aligner, row, lo, target, query) for row, lo, target in todo[name]]
        out: list[dict | None | bool] = [None] * len(scored)
        kept: list[tuple[str, str, int, int]] = []
        traced_ends: set[tuple] = set()
        significant = [j for j, sc in enumerate(scored) if sig.evalue(sc.best[0], len(query)) <= evalue]
        for j in sorted(significant, key=lambda j: -scored[j].best[0]):  # best first, traced until k distinct loci
            row, lo, target = todo[name][j]
            sc = scored[j]
            end = (row["genome"], row["contig"], sc.strand, sc.start + sc.best[2], sc.best[0])  # traced: a copy of one
            if end in traced_ends or len(kept) >= k and name not in (exclude or {}):  # (all where the own region is dropped later)
                out[j] = False
                continue
            traced_ends.add(end)
            out[j] = traced = _trace(local.aligner, sig, sc, target[sc.start - lo : sc.end - lo], len(query))
            spot = (row["genome"], row["contig"], traced["start"], traced["end"])
            if not any(overlapping(spot, other) for other in kept):
                kept.append(spot)
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(len(todo), THREADS))) as pool:
        aligned = dict(zip(todo, pool.map(align, todo)))
    rows = [{**row, "verified": False} if a is None else {**row, **a, "verified": True}
            for name, items in todo.items() for (row, _, _), a in zip(items, aligned[name]) if a is not False]
    rows += [{**row, "verified": False} for row in loci.iter_rows(named=True) if len(queries[row["query"]]) > MAX_VERIFY_BP]
    out = pl.DataFrame(rows, schema={**dict(loci.schema), **ALIGNMENT_SCHEMA}, orient="row")
    for name, region in (exclude or {}).items():  # an alignment may reach back into the query's own region
        out = out.filter(~((pl.col("query") == name) & (pl.col("genome") == region.genome)
                           & (pl.col("contig") == region.contig) & (pl.col("start") < region.end)
                           & (pl.col("end") > region.start)))
    out = out.with_columns((pl.col("score") * pl.col("windows")).alias("_total")).sort(
        ["query", "verified", "aln_score", "_total", "start"], descending=[False, True, True, True, False],
        nulls_last=True)
    out = out.filter(pl.Series(primary(out, k)))
    return out.with_columns(pl.int_range(1, pl.len() + 1).over("query").alias("rank")).select(LOCUS_COLUMNS)


def _stretch(index: "Index", row: dict, qlen: int, strand: str | None = None) -> tuple[int, int]:
    """The stretch of genome a candidate is aligned against on ``strand`` (default: the candidate's;
    ``.``: what either strand needs): the locus extended by the parts of the query it does not
    cover, on that strand, and a flank (a tenth of the query, at least 100 bp)."""
    strand = strand or row["strand"]
    before, after = row["query_start"], qlen - row["query_end"]
    flank = max(100, qlen // 10)
    lead, trail = {"+": (before, after), "-": (after, before)}.get(strand, (max(before, after),) * 2)
    length = index.genome(row["genome"]).contigs[row["contig"]]
    return max(0, row["start"] - flank - lead), min(length, row["end"] + flank + trail)


def _strand(aligner: Aligner, row: dict, lo: int, target: bytes, query: bytes) -> str:
    """The strand to align a candidate of unknown strand on: the one on which the part of the query
    it covers aligns better to its own locus (plus 150 bp each side, past a piece's offset from the
    window grid); a few times cheaper than aligning the whole query on both."""
    part = query[row["query_start"] : row["query_end"]]
    a, b = max(0, row["start"] - 150 - lo), row["end"] + 150 - lo
    plus, minus = (aligner.best(p, target[a:b])[0] for p in (part, reverse_complement(part)))
    return "+" if plus >= minus else "-"


class Scored(NamedTuple):
    """A candidate scored: the strand it is aligned on, its stretch of genome (``start``-``end``), the
    query oriented to that strand, and :meth:`Aligner.best` (score, query end, stretch end)."""

    strand: str
    start: int
    end: int
    query: bytes
    best: tuple[int, int, int]


def _score(index: "Index", aligner: Aligner, row: dict, lo: int, target: bytes, query: bytes) -> Scored:
    """A candidate's best alignment score against its stretch of genome (``target``, which starts at
    ``lo``), on the candidate's strand (where unknown, :func:`_strand`)."""
    strand = row["strand"] if row["strand"] != "." else _strand(aligner, row, lo, target, query)
    a, b = _stretch(index, row, len(query), strand)
    q = query if strand == "+" else reverse_complement(query)
    return Scored(strand, a, b, q, aligner.best(q, target[a - lo : b - lo]))


def _trace(aligner: Aligner, sig: Significance, sc: Scored, stretch: bytes, qlen: int) -> dict:
    """The alignment :func:`_score` found, traced back: coordinates, counts, CIGAR and E-value."""
    score, qs, qe, ts, te, cigar = aligner.align(sc.query, stretch, sc.best)
    if sc.strand == "-":
        qs, qe = qlen - qe, qlen - qs
    matches, mismatches, opens, gaps = cigar_counts(cigar)
    return {"query_start": qs, "query_end": qe, "start": sc.start + ts, "end": sc.start + te, "strand": sc.strand,
            "evalue": sig.evalue(score, qlen), "aln_score": score, "bitscore": round(sig.bits(score), 1),
            "identity": matches / (matches + mismatches + gaps), "aligned": matches + mismatches + gaps,
            "matches": matches, "mismatches": mismatches, "gap_opens": opens, "gaps": gaps, "cigar": cigar}
