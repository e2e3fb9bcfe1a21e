"""Search a built index with new sequences or genome regions (the CLI and the API share this)."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from genembed.encode.embed import Embedder, embed_sequences
from genembed.errors import GenembedError
from genembed.data.genome import IUPAC, Genome
from genembed.data.io import read_table
from genembed.data.identity import QUERY_FIELDS, ShardIdentity
from genembed.search.index import INDEX_FILE, TABLE_FILE, VECTORS_FILE, IndexManifest, is_ivf, read_index, read_manifest
from genembed.data.vectors import normalise
from genembed.encode.models import fingerprint
from genembed.encode.scan import Scanner
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer, reverse_complement

_REGION = re.compile(r"^([^:]+):(.+):(\d[\d,]*)-(\d[\d,]*)$")
_VALID = re.compile(b"^[" + IUPAC.upper() + b"]+$")
HIT_COLUMNS = ["query", "rank", "genome", "contig", "start", "end", "score"]
CANDIDATES = 20  # candidate loci per query that verification aligns
PIECE_HITS = 10  # hits per query piece, at least, kept for the candidates even where nothing chains with them
DEEP_HITS = 200  # hits per piece searched for chains: a region with many similar copies needs them all
DEEP_BP = 20_000  # queries up to this long search deep (as long as verification aligns)
WINDOW_COLUMNS = ["query", "query_start", "query_end", "rank", "genome", "contig", "start", "end", "strand", "score"]


@dataclass(frozen=True)
class LocusSearch:
    """How a loci search runs: the top ``k`` loci per query, among ``genomes`` (None: all), on
    ``strand`` ``both`` or ``forward`` (the query as given); ``windows``: every piece's window hits
    instead of loci (:data:`WINDOW_COLUMNS`); ``verify``: candidates aligned to the genome, at least
    ``candidates`` of them per query."""

    k: int = 10
    genomes: Sequence[str] | None = None
    strand: str = "both"
    windows: bool = False
    verify: bool = True
    candidates: int = CANDIDATES

    def __post_init__(self) -> None:
        if self.strand not in ("both", "forward"):
            raise GenembedError(f"strand must be both or forward, not {self.strand!r}")
        if self.k < 1:
            raise GenembedError(f"k must be at least 1, not {self.k}")


@dataclass(frozen=True)
class Region:
    """A genome region, 0-based half-open (as the index's tables and hits print it)."""

    genome: str
    contig: str
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> "Region":
        m = _REGION.match(text)
        if not m:
            raise GenembedError(f"region {text!r}: expected GENOME:CONTIG:START-END")
        start, end = (int(x.replace(",", "")) for x in m.group(3, 4))
        if start >= end:
            raise GenembedError(f"region {text!r}: start must be below end")
        return cls(m.group(1), m.group(2), start, end)

    def __str__(self) -> str:
        return f"{self.genome}:{self.contig}:{self.start}-{self.end}"


class QueryEncoder:
    """Query sequences to unit vectors, made exactly as an index's windows were: the traced copy of
    the encoder the index keeps (fast start), else the model itself (``model`` replaces the folder
    the manifest names; refused when its files differ from those the index was built with)."""

    def __init__(self, index_dir: Path, manifest: IndexManifest, model: str | None = None):
        self.dir, self.manifest, self.model_path = index_dir, manifest, model
        self._loaded: tuple[Embedder, Any] | None = None
        self._invariant: bool | None = None

    def _load(self) -> tuple[Embedder, Any]:
        if self._loaded is None:
            from genembed.search.export import load_query_model, query_settings

            self._loaded = None if self.model_path else load_query_model(self.dir, self.manifest)
            if self._loaded is None:
                built = self.manifest.plan.fingerprint
                spec = self.manifest.model(self.model_path)
                embedder = Embedder(spec, query_settings(self.manifest))
                found = fingerprint(spec.source) if Path(spec.source).is_dir() else None
                if found is not None and found != built:
                    raise GenembedError(f"{spec.source}: model files differ from those the index was built with"
                                        f" (fingerprint {found[:12]} != {built[:12]})")
                tokenizer = make_tokenizer(TokenizerSpec.parse(self.manifest["settings"]["tokenizer"]), embedder.tokenizer)
                self._loaded = embedder, tokenizer
        return self._loaded

    def strand_invariant(self) -> bool:
        """True when a sequence and its reverse complement embed alike (``strands: average``, or a
        model built so, as genembed-conv): one search then covers both strands."""
        if self._invariant is None:
            if self.manifest["settings"].get("strands") == "average":
                self._invariant = True
            else:
                probe = np.frombuffer(b"ACGT", np.uint8)[np.random.default_rng(0).integers(0, 4, 300)].tobytes()
                a, b = self.embed([probe, reverse_complement(probe)])
                self._invariant = bool(a @ b > 0.9999)
        return self._invariant

    @property
    def embedder(self) -> Embedder:
        """The loaded encoder (a traced copy has no transformers tokenizer)."""
        return self._load()[0]

    def problem(self, seq: bytes) -> str | None:
        """Why a query sequence cannot be searched (one line), or None: it must be IUPAC nucleotides,
        hold some A, C, G or T and, with a k-mer tokenizer, be at least one k-mer long."""
        k = getattr(self._load()[1], "k", 1)
        if not seq:
            return "empty sequence"
        if not _VALID.match(seq):
            bad = sorted(set(seq.translate(None, IUPAC).decode(errors="replace")))
            return f"characters that are not IUPAC nucleotides: {''.join(bad)!r}"
        if len(seq) < k:
            return f"{len(seq)} bp is shorter than one {k}-mer token"
        if not seq.translate(None, b"NRYKMSWBDHVnrykmswbdhv-"):
            return "no A, C, G or T (only N or other ambiguity codes): nothing to search for"
        return None

    def embed_pieces(self, queries: Mapping[str, bytes], cut: Sequence[tuple[str, int, int]], size: int) -> np.ndarray:
        """Unit vectors of query pieces ``(name, start, end)`` (upper-case ``queries``). With a model
        whose states are local (:mod:`genembed.encode.scan`), the pieces of ``size`` bp of all the queries
        come from one pass along the queries laid end to end: a piece's inner states depend only on
        bases inside it, and its edges are run on their own; the same vectors as :meth:`embed`."""
        embedder, tokenizer = self._load()
        scanner = Scanner(embedder, tokenizer, self.manifest.plan.max_tokens)
        whole = [j for j, (_, a, b) in enumerate(cut) if b - a == size]
        if scanner.reach is None or len(whole) < 2:
            return self.embed([queries[n][a:b] for n, a, b in cut], [n for n, _, _ in cut])
        out = np.zeros((len(cut), embedder.hidden_size), dtype=np.float32)
        names = list(dict.fromkeys(cut[j][0] for j in whole))
        offset = dict(zip(names, np.cumsum([0] + [len(queries[n]) for n in names[:-1]]).tolist()))
        stream = b"".join(queries[n] for n in names)
        out[whole] = normalise(scanner(stream, np.array([offset[cut[j][0]] + cut[j][1] for j in whole]), size))
        rest = [j for j, (_, a, b) in enumerate(cut) if b - a != size]
        if rest:
            out[rest] = self.embed([queries[cut[j][0]][cut[j][1]:cut[j][2]] for j in rest], [cut[j][0] for j in rest])
        return out

    def embed(self, sequences: Sequence[bytes], names: Sequence[str] | None = None) -> np.ndarray:
        """Unit-length vectors; refused (naming the query) for a sequence with a :meth:`problem`."""
        embedder, tokenizer = self._load()
        for i, seq in enumerate(sequences):
            problem = self.problem(seq)
            if problem:
                raise GenembedError(f"query {names[i]!r}: {problem}" if names else f"query: {problem}")
        return normalise(embed_sequences(embedder, tokenizer, sequences, self.manifest.plan.max_tokens, "query"))


class Searcher:
    """The top-k windows of an index for query vectors: FAISS search, genome filters (id ranges),
    exclusion of a query's own region, and exact re-scoring of lossy (PQ) candidates."""

    def __init__(self, index_dir: Path, manifest: dict[str, Any]):
        self.dir, self.manifest = index_dir, manifest
        self.faiss = read_index(index_dir, manifest["index"])
        # compact in memory: names as categories, coordinates as 32-bit (contigs are under 4 Gbp)
        self.table = read_table(index_dir / TABLE_FILE).with_columns(
            pl.col("genome", "contig").cast(pl.Categorical), pl.col("start", "end").cast(pl.UInt32))
        if not (index_dir / VECTORS_FILE).is_file():
            raise GenembedError(f"{index_dir / VECTORS_FILE}: missing (the index's stored vectors: region queries,"
                                " re-scoring and E-values read them); rebuild the index")
        if self.faiss.ntotal != self.table.height:
            raise GenembedError(f"{index_dir / INDEX_FILE}: {self.faiss.ntotal:,} vectors, but"
                                f" {index_dir / TABLE_FILE} lists {self.table.height:,} windows (files of different"
                                " indexes?); rebuild the index")
        self._by_id: tuple[np.ndarray, np.ndarray | None] | None = None
        self._vectors = None

    def search(self, names: Sequence[str], x: np.ndarray, k: int, genomes: Sequence[str] | None = None,
               exclude: Mapping[str, Region] | None = None) -> pl.DataFrame:
        """Hits (``HIT_COLUMNS``) of the unit-length query rows ``x``, named ``names``."""
        if k < 1:
            raise GenembedError(f"k must be at least 1, not {k}")
        exclude = exclude or {}
        extra = max((self._overlapping(r) for r in exclude.values()), default=0)
        want = min(k + extra, self.faiss.ntotal)
        rerank = int(self.manifest["index"].get("rerank") or 1)
        fetch = min(want * rerank, self.faiss.ntotal)
        scores, ids = self.faiss.search(x, fetch, params=self._selector(genomes)) if genomes else \
            self.faiss.search(x, fetch)
        rows = self._rows(ids)
        if rerank > 1:
            scores, rows = self._rerank(x, rows, want)
        width, rows = rows.shape[1], rows.ravel()
        found = rows >= 0
        hits = pl.DataFrame({
            "query": np.repeat(list(names), width)[found],
            "score": scores.ravel()[found].astype(np.float32),
        }).hstack(self.table[rows[found]].select("genome", "contig", "start", "end"))
        for name, region in exclude.items():
            hits = hits.filter(~((pl.col("query") == name) & (pl.col("genome") == region.genome)
                                 & (pl.col("contig") == region.contig) & (pl.col("start") < region.end)
                                 & (pl.col("end") > region.start)))
        hits = hits.with_columns(pl.int_range(1, pl.len() + 1).over("query").alias("rank"))
        return hits.filter(pl.col("rank") <= k).select(HIT_COLUMNS).with_columns(
            pl.col("genome", "contig").cast(pl.String), pl.col("start", "end").cast(pl.Int64))

    def rows_at(self, genome: str, contig: str, starts: Sequence[int], size: int) -> np.ndarray:
        """Id-table rows of the windows of ``size`` bp at these starts on a contig; -1 where none is indexed."""
        found = self.table.with_row_index("row").filter(
            (pl.col("genome") == genome) & (pl.col("contig") == contig) & (pl.col("end") - pl.col("start") == size)
            & pl.col("start").is_in(list(starts))).select("start", "row")
        where = dict(found.iter_rows())
        return np.array([where.get(s, -1) for s in starts], dtype=np.int64)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Unit-length stored vectors of id-table rows."""
        return normalise(self._stored()[rows])

    def _rerank(self, x: np.ndarray, rows: np.ndarray, keep: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """The best ``keep`` of each query's candidates (id-table ``rows``, -1 for none), re-scored
        exactly (cosine) with the stored embeddings: PQ codes only approximate the scores, so their
        ranking is coarse. Only the candidates' rows are read from disk."""
        out_scores = np.full((len(rows), keep), -np.inf, dtype=np.float32)
        out_rows = np.full((len(rows), keep), -1, dtype=rows.dtype)
        for lo in range(0, len(rows), block):
            r = rows[lo : lo + block]
            wanted = np.unique(r[r >= 0])
            if not len(wanted):
                continue
            emb = normalise(self._stored()[wanted])
            s = np.einsum("qd,qkd->qk", x[lo : lo + block], emb[np.searchsorted(wanted, np.maximum(r, 0))])
            s[r < 0] = -np.inf
            order = np.argsort(-s, axis=1, kind="stable")[:, :keep]
            out_scores[lo : lo + block] = np.take_along_axis(s, order, 1)
            out_rows[lo : lo + block] = np.where(np.isfinite(out_scores[lo : lo + block]),
                                                 np.take_along_axis(r, order, 1), -1)
        return out_scores, out_rows

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Row in the id table (and in ``vectors.npy``) of each window id; -1 where there is none."""
        if self._by_id is None:
            table_ids = self.table["window_id"].to_numpy()
            if len(table_ids) > 1 and not (table_ids[1:] > table_ids[:-1]).all():  # indexes made before sorting
                order = np.argsort(table_ids, kind="stable")
                self._by_id = (table_ids[order], order)
            else:
                self._by_id = (table_ids, None)
        sorted_ids, order = self._by_id
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        return np.where((ids >= 0) & (sorted_ids[pos] == ids), pos if order is None else order[pos], -1)

    def _stored(self) -> np.ndarray:
        """The index's vectors (float16, id-table order), memory-mapped: only the rows read are loaded."""
        if self._vectors is None:
            path = self.dir / VECTORS_FILE  # there: checked when the index was opened
            try:
                vectors = np.load(path, mmap_mode="r")
            except ValueError as exc:
                raise GenembedError(f"{path}: unreadable ({exc}); rebuild the index") from None
            if vectors.shape != (self.table.height, int(self.manifest["index"]["dim"])):
                raise GenembedError(f"{path}: {vectors.shape[0]:,} vectors of dimension {vectors.shape[1]}, but the index"
                                    f" has {self.table.height:,} of {self.manifest['index']['dim']}; rebuild the index")
            self._vectors = vectors
        return self._vectors

    def _overlapping(self, region: Region) -> int:
        """How many indexed windows can overlap a region (so that dropping them still leaves k hits)."""
        s = self.manifest["settings"]
        return (region.end - region.start + int(s["window_size"])) // int(s["window_stride"]) + 1

    def check_genomes(self, genomes: Sequence[str]) -> None:
        """Refuse genome names the index does not hold, naming those it does."""
        unknown = sorted(set(genomes) - set(self.manifest["genomes"]))
        if unknown:
            raise GenembedError(f"genome {', '.join(unknown)} is not in this index ({', '.join(sorted(self.manifest['genomes']))})")

    def _selector(self, genomes: Sequence[str]):
        """FAISS search parameters that keep only the windows of these genomes (window ids carry the
        genome's code in their high bits, so each genome is one id range)."""
        import faiss

        from genembed.data.windows import genome_code

        self.check_genomes(genomes)
        selector = None
        for g in genomes:
            code = genome_code(g)
            part = faiss.IDSelectorRange(code << 32, (code + 1) << 32)
            selector = part if selector is None else faiss.IDSelectorOr(selector, part)
        self._keep = selector  # FAISS holds a raw pointer: keep the selectors alive with the index
        params = faiss.SearchParametersIVF() if is_ivf(self.faiss) else faiss.SearchParameters()
        if isinstance(params, faiss.SearchParametersIVF):
            params.nprobe = int(self.manifest["index"].get("nprobe") or 1)
        params.sel = selector
        return params


class Index:
    """A built genembed index: ``Index.open(dir).search({"q": b"ACGT..."}, k=10)``; a query encoder
    beside a searcher, over the index folder."""

    def __init__(self, index_dir: str | os.PathLike, model: str | None = None, manifest: dict[str, Any] | None = None):
        self.dir = Path(index_dir)
        self.manifest = manifest or read_manifest(self.dir)
        self.searcher = Searcher(self.dir, self.manifest)
        self.encoder = QueryEncoder(self.dir, self.manifest, model)
        self._genomes: dict[str, Genome] = {}
        self._packed: dict[str, Any] = {}
        self._calibration = None
        self._levels: dict[str, tuple] = {}  # genome / contig level: FAISS index and id table (search_level)

    @classmethod
    def open(cls, index_dir: str | os.PathLike, model: str | None = None) -> "Index":
        """Open a built index; ``model`` replaces the model folder the manifest names (refused when
        its files differ from those the index was built with)."""
        return cls(index_dir, model)

    @property
    def faiss(self):
        return self.searcher.faiss

    def check_compatible(self, attrs: Mapping[str, Any], what: str = "query embeddings") -> None:
        """Refuse embeddings made otherwise than the index (model, tokenizer, pooling, layer, strands,
        windows), naming every setting that differs."""
        ShardIdentity.from_attrs(attrs).require(ShardIdentity.from_attrs(self.manifest["settings"]), what,
                                                f"the index {self.dir}", "index", QUERY_FIELDS)

    def embed(self, sequences: Sequence[bytes], names: Sequence[str] | None = None) -> np.ndarray:
        return self.encoder.embed(sequences, names)

    def search(self, queries: Mapping[str, bytes], k: int = 10, genomes: Sequence[str] | None = None,
               exclude: Mapping[str, Region] | None = None) -> pl.DataFrame:
        """Top-``k`` windows for each named query sequence, best first; only in ``genomes`` when
        given, and without the windows that overlap a query's own region in ``exclude``."""
        names = list(queries)
        return self.searcher.search(names, self.encoder.embed([queries[n].upper() for n in names], names), k, genomes,
                                    exclude)

    def search_vectors(self, vectors: Mapping[str, np.ndarray], k: int = 10, genomes: Sequence[str] | None = None,
                       exclude: Mapping[str, Region] | None = None) -> pl.DataFrame:
        """Top-``k`` windows for named query vectors (made as the index's: see :meth:`check_compatible`)."""
        names = list(vectors)
        x = normalise(np.stack([np.asarray(vectors[n], dtype=np.float32) for n in names]))
        return self.searcher.search(names, x, k, genomes, exclude)

    def search_shard(self, path: str | os.PathLike, k: int = 10, genomes: Sequence[str] | None = None) -> pl.DataFrame:
        """Top-``k`` windows for every window of an embedding shard (for example of a genome embedded
        later with ``genembed embed``), refused when it was embedded otherwise than the index."""
        from genembed.data.store import read_shard

        shard = read_shard(path)
        self.check_compatible(shard.attrs, str(path))
        return self.search_vectors({str(i): v for i, v in zip(shard.window_id, shard.embeddings)}, k, genomes)

    def screen(self, queries: Mapping[str, bytes], strict: bool = False, refuse_all: bool = True
               ) -> tuple[dict[str, bytes], list[dict]]:
        """The queries that can be searched, and the others as ``{"query", "reason"}``; refused,
        naming the first bad one, when (``strict``) any cannot be searched or (``refuse_all``) none can."""
        bad = [{"query": name, "reason": why} for name, seq in queries.items()
               if (why := self.encoder.problem(seq.upper()))]
        if bad and (strict or refuse_all and len(bad) == len(queries)):
            more = f" ({len(bad)} of {len(queries)} records cannot be searched)" if len(queries) > 1 else ""
            raise GenembedError(f"query {bad[0]['query']!r}: {bad[0]['reason']}{more}")
        skip = {b["query"] for b in bad}
        return {name: seq for name, seq in queries.items() if name not in skip}, bad

    def search_loci(self, queries: Mapping[str, bytes], search: LocusSearch = LocusSearch(),
                    exclude: Mapping[str, Region] | None = None,
                    stored: Mapping[str, np.ndarray] | None = None) -> pl.DataFrame:
        """The top loci (:data:`genembed.search.loci.LOCUS_COLUMNS`) of each named query of any length, as
        ``search`` says (:class:`LocusSearch`): cut into the index's windows, searched on both strands
        (or as given), hits chained into candidate loci, and each candidate aligned to its stretch of
        genome (:func:`genembed.search.verify.verify`). ``exclude`` drops, per query, hits overlapping
        a region. ``stored`` gives, per query, the id-table row of each piece's indexed window (-1 where
        none): its stored vector is used instead of embedding the piece. A piece with nothing to
        search (all N) is left out; a query with none is refused."""
        from genembed.search.loci import chain, pieces, unverified

        k, genomes, strand, windows, verify = search.k, search.genomes, search.strand, search.windows, search.verify
        size, step = (int(self.manifest["settings"][key]) for key in ("window_size", "window_stride"))
        upper = {name: seq.upper() for name, seq in queries.items()}
        cut, rows = [], []  # (query, start, end) of every piece; its indexed window's id-table row or -1
        for name, seq in upper.items():
            spans = pieces(len(seq), size, step)
            given = list((stored or {}).get(name, [-1] * len(spans)))
            kept = [(span, row) for span, row in zip(spans, given)
                    if row >= 0 or self.encoder.problem(seq[span[0]:span[1]]) is None]
            if not kept:  # the whole query's problem, in one line
                self.encoder.embed([seq], [name])
            cut += [(name, a, b) for (a, b), _ in kept]
            rows += [row for _, row in kept]
        names = [name for name, _, _ in cut]
        seqs = [upper[name][a:b] for name, a, b in cut]
        runs = [("+", self._piece_vectors(upper, cut, np.asarray(rows, dtype=np.int64), size))]
        invariant = self.encoder.strand_invariant()
        if strand == "both" and not invariant:
            runs.append(("-", self.encoder.embed([reverse_complement(q) for q in seqs], names)))
        ids = [str(j) for j in range(len(cut))]
        excluded = {ids[j]: exclude[n] for j, n in enumerate(names) if n in (exclude or {})}
        wanted = k if windows else max(k, search.candidates if verify else k)
        shallow = k if windows or len(cut) == len(queries) and not verify else max(wanted, PIECE_HITS)
        # a query of several pieces, up to DEEP_BP, searches deep: among many similar copies (strains,
        # repeats) the right one's windows may rank below the others' in each piece, and only
        # chaining tells; a longer query has signal enough in its many pieces
        pieces_of = Counter(names)
        deep = np.array([not windows and 1 < pieces_of[n] and len(upper[n]) <= DEEP_BP for n in names], dtype=bool)
        null = None if windows else self.calibration().embedding
        parts = []
        for sign, x in runs:
            for rows, depth in ((np.flatnonzero(deep), max(shallow, DEEP_HITS)), (np.flatnonzero(~deep), shallow)):
                if not len(rows):
                    continue
                some = [ids[r] for r in rows]
                h = self.searcher.search(some, np.ascontiguousarray(x[rows]), depth, genomes,
                                         {i: excluded[i] for i in some if i in excluded})
                j = h["query"].cast(pl.Int64).to_numpy()
                parts.append(h.with_columns(pl.Series("piece", j), pl.lit(sign).alias("strand"), pl.lit(False).alias("ambiguous"),
                                            pl.Series("x", null.normalise(h["score"].to_numpy()) if null else
                                                      np.zeros(h.height))).drop("query"))
        info = pl.DataFrame({"piece": np.arange(len(cut)), "query": names, "query_start": [a for _, a, _ in cut],
                             "query_end": [b for _, _, b in cut]})
        hits = pl.concat(parts).join(info, on="piece")
        if strand == "both" and invariant:
            # a one-window query's strand from shared k-mers; verification's alignments tell it better
            single = set() if verify and not windows else {n for n, seq in queries.items() if len(seq) <= size}
            hits = self._orient(hits, seqs, single, both=not windows)
        if windows:
            return hits.sort(["piece", "rank", "strand"]).select(WINDOW_COLUMNS)
        tests = {name: n * len(runs) for name, n in Counter(names).items()}  # windows searched per query
        loci = chain(hits, size, step, wanted, tests, lone_rank=shallow)
        if not verify:
            return unverified(loci.filter(pl.col("rank") <= k))
        from genembed.search.verify import verify as verify_loci

        return verify_loci(self, loci, upper, k, exclude)

    def search_level(self, queries: Mapping[str, bytes], level: str = "genome", k: int = 10,
                     genomes: Sequence[str] | None = None) -> pl.DataFrame:
        """The ``k`` genomes (``level="genome"``) or contigs nearest each named query of any length, by
        cosine: the query's vector is the mean of its pieces' unit vectors (cut into the index's
        windows, as loci queries are), as a genome's vector is the mean of its windows'
        (:mod:`genembed.reports.compare`); searched in the index's small exact index of that level."""
        from genembed.data.vectors import mean_vector
        from genembed.search.index import LEVEL_FILES, LEVELS, read_index_file
        from genembed.search.loci import pieces

        if level not in LEVELS:
            raise GenembedError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        if k < 1:
            raise GenembedError(f"k must be at least 1, not {k}")
        if level not in self.manifest.get("levels", {}):
            raise GenembedError(f"{self.dir}: built before genome and contig vectors were indexed; rebuild the index "
                                "(genembed index, or the workflow's merge_index) to search by genome or contig")
        size, step = (int(self.manifest["settings"][key]) for key in ("window_size", "window_stride"))
        upper = {name: seq.upper() for name, seq in queries.items()}
        cut = []
        for name, seq in upper.items():
            kept = [(name, a, b) for a, b in pieces(len(seq), size, step) if self.encoder.problem(seq[a:b]) is None]
            if not kept:
                self.encoder.embed([seq], [name])  # the whole query's problem, in one line
            cut += kept
        x = self.encoder.embed_pieces(upper, cut, size)
        owner = np.array([n for n, _, _ in cut])
        names = list(upper)
        vectors = normalise(np.stack([mean_vector(x[owner == n]) for n in names]))
        if level not in self._levels:  # read once per open index (a FASTA's batches share them)
            faiss_file, table_file = LEVEL_FILES[level]
            self._levels[level] = read_index_file(self.dir / faiss_file), pl.read_parquet(self.dir / table_file)
        index, table = self._levels[level]
        if genomes:
            self.searcher.check_genomes(genomes)
        sim, ids = index.search(vectors, index.ntotal) if index.ntotal else (np.zeros((len(names), 0)), np.zeros((len(names), 0), int))
        out = []
        for q, name in enumerate(names):
            hits = table[ids[q][ids[q] >= 0]].with_columns(pl.Series("similarity", sim[q][ids[q] >= 0]))
            if genomes:
                hits = hits.filter(pl.col("genome").is_in(list(genomes)))
            hits = hits.head(k)
            out.append(hits.with_columns(pl.lit(name).alias("query"), pl.int_range(1, hits.height + 1).alias("rank"),
                                         pl.lit(level).alias("level"), (1 - pl.col("similarity")).alias("distance")))
        return pl.concat(out).select("query", "rank", "level", "genome", "contig", "windows", "similarity", "distance")

    def calibration(self):
        """The index's calibrated nulls (:func:`genembed.search.verify.calibration`), fitted once."""
        if self._calibration is None:
            from genembed.search.verify import calibration

            self._calibration = calibration(self)
        return self._calibration

    def _piece_vectors(self, queries: Mapping[str, bytes], cut: list[tuple[str, int, int]], rows: np.ndarray,
                       size: int) -> np.ndarray:
        """Unit vectors of query pieces: the stored vector of id-table ``rows`` where one is given
        (not -1), the others embedded (:meth:`QueryEncoder.embed_pieces`)."""
        x = np.zeros((len(cut), int(self.manifest["index"]["dim"])), dtype=np.float32)
        have = rows >= 0
        if have.any():
            x[have] = self.searcher.vectors(rows[have])
        if not have.all():
            todo = np.flatnonzero(~have)
            x[todo] = self.encoder.embed_pieces(queries, [cut[j] for j in todo], size)
        return x

    def _orient(self, hits: pl.DataFrame, seqs: list[bytes], single: set[str], both: bool) -> pl.DataFrame:
        """Strands for an embedding that is the same on both: a one-piece query's hit takes the
        strand whose k-mers it shares (from the genome copy the index keeps); other hits are ``.``,
        or with ``both`` listed on both strands, for the chaining to tell by the order of the pieces."""
        from genembed.search.loci import orientation

        alone = pl.col("query").is_in(list(single))
        strands = []
        for piece, genome, contig, start, end in hits.filter(alone).select(
                "piece", "genome", "contig", "start", "end").iter_rows():
            target = self.genome(genome).fetch(contig, start, end)
            strands.append(orientation(seqs[piece], target, reverse_complement(target)))
        hits = hits.with_columns(pl.lit(".").alias("strand"))
        if strands:
            hits = pl.concat([hits.filter(alone).with_columns(pl.Series("strand", strands)), hits.filter(~alone)])
        if not both:
            return hits
        unknown = hits.filter(pl.col("strand") == ".").with_columns(pl.lit(True).alias("ambiguous"))
        return pl.concat([hits.filter(pl.col("strand") != "."), unknown.with_columns(pl.lit("+").alias("strand")),
                          unknown.with_columns(pl.lit("-").alias("strand"))])

    def genome(self, name: str) -> Genome:
        """The copy of a genome the index keeps in its folder (so that a moved index still reads it)."""
        if name not in self._genomes:
            path = self.manifest["genomes"].get(name)
            if path is None:
                raise GenembedError(f"genome {name!r} is not in this index ({', '.join(sorted(self.manifest['genomes']))})")
            full = (self.dir / path).resolve()
            if not full.is_relative_to(self.dir.resolve()):
                raise GenembedError(f"genome {name}: the index {self.dir} keeps no copy of it (made by an older"
                                    " genembed); rebuild the index")
            if not full.is_file():
                raise GenembedError(f"{self.dir / path}: genome {name} is missing from the index folder; rebuild the index")
            self._genomes[name] = Genome(full)
        return self._genomes[name]

    def packed(self, name: str):
        """The packed copy of a genome (:mod:`genembed.data.packed`; made now where it is missing and the
        folder is writable), or None."""
        if name not in self._packed:
            from genembed.data.packed import packed

            self._packed[name] = packed(self.genome(name))
        return self._packed[name]

    def fetch(self, region: Region) -> bytes:
        if region.genome not in self.manifest["genomes"]:
            raise GenembedError(f"region {region}: genome {region.genome!r} is not in this index"
                                f" ({', '.join(sorted(self.manifest['genomes']))})")
        return self.genome(region.genome).fetch(region.contig, region.start, region.end)

    def search_region(self, region: Region | str, search: LocusSearch = LocusSearch(),
                      exclude_self: bool = False) -> pl.DataFrame:
        """Top loci resembling a genome region (as ``search`` says), from the stored vectors of its
        indexed windows (the others embedded from the genome copy); ``exclude_self`` drops hits
        overlapping the region."""
        from genembed.search.loci import pieces

        region = Region.parse(region) if isinstance(region, str) else region
        seq = self.fetch(region)
        size, step = (int(self.manifest["settings"][key]) for key in ("window_size", "window_stride"))
        starts = [region.start + a for a, _ in pieces(len(seq), size, step)]
        rows = self.searcher.rows_at(region.genome, region.contig, starts, size) if len(seq) >= size else \
            np.full(1, -1)
        name = str(region)
        return self.search_loci({name: seq}, search, {name: region} if exclude_self else None, {name: rows})

    def with_lengths(self, loci: pl.DataFrame, queries: Mapping[str, int]) -> pl.DataFrame:
        """Loci with the lengths PAF rows need: of each query (``queries``) and of each hit's contig."""
        contigs = {(g, c): self.genome(g).contigs[c] for g, c in loci.select("genome", "contig").unique().iter_rows()}
        return loci.with_columns(
            pl.col("query").replace_strict(dict(queries), return_dtype=pl.Int64).alias("query_length"),
            pl.Series("contig_length", [contigs[k] for k in zip(loci["genome"], loci["contig"])], dtype=pl.Int64))

    def close(self) -> None:
        for genome in self._genomes.values():
            genome.close()
        self._genomes.clear()
        self._packed.clear()
