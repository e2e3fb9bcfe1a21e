"""Search answers a BLAST user can take at face value, on real E. coli sequence and the default
config: exact copies rank first among repeats, loci are verified by alignment and carry the
aligner's own counts, shuffled queries get no significant E-value, chains keep their geometry, and
a bad record in a query FASTA is skipped while the rest are answered."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import parasail
import polars as pl
import pytest

from genembed.search.align import BLASTN, cigar_counts
from genembed.data.windows import mutate
from genembed.search.hits import format_hits
from genembed.search.loci import chain
from genembed.search.query import Index, LocusSearch
from genembed.encode.tokenize import reverse_complement
from helpers import EXAMPLE_FASTA, default_plan

CONTIG = "NC_000913.3"
# four of E. coli K-12's seven rRNA operons (near-identical 5-kb copies), 8 kb around each, as contigs
OPERONS = {"rrnH": (222_000, 230_000), "rrnG": (2_724_000, 2_732_000), "rrnB": (4_165_000, 4_173_000),
           "rrnE": (4_206_000, 4_214_000)}
# their 23S rRNA genes (GFF, made 0-based half-open): rrnB's and rrnG's are identical, rrnE's and
# rrnH's differ from them by 4 and 18 bases
RRN_23S = {"rrnB": (4_168_640, 4_171_544), "rrnG": (2_726_280, 2_729_184), "rrnE": (4_210_042, 4_212_946),
           "rrnH": (225_758, 228_662)}


@pytest.fixture(scope="module")
def genome() -> bytes:
    with gzip.open(EXAMPLE_FASTA, "rb") as fh:
        return b"".join(fh.read().split(b"\n")[1:])


@pytest.fixture(scope="module")
def operons(tmp_path_factory, genome):
    """The four operons' stretches as contigs of one genome, embedded with the default config and indexed."""
    from genembed.search.build import build_index
    from genembed.run.pipeline import embed_genome as drive

    d = tmp_path_factory.mktemp("operons")
    fasta = d / "rrn.fa"
    fasta.write_bytes(b"".join(b">%s\n%s\n" % (name.encode(), genome[a:b]) for name, (a, b) in OPERONS.items()))
    plan = default_plan()
    built = drive(plan, fasta, "rrn", d / "results")[0]
    build_index([built], d / "index", plan)
    ix = Index.open(d / "index")
    yield ix
    ix.close()


@pytest.fixture(scope="module")
def index(default_index):
    ix = Index.open(default_index["dir"])
    yield ix
    ix.close()


def test_an_exact_copy_of_a_repeated_region_ranks_that_copy_first(operons, genome):
    """The 23S gene is in every operon, the copies differing by a few bases; rrnE's exact copy (cut
    off the window grid) must come first, at its exact coordinates, before the near copies (which
    the embedding alone ranks above it)."""
    def locus(operon: str) -> tuple[str, int, int]:
        a, b = RRN_23S[operon]
        return operon, a - OPERONS[operon][0], b - OPERONS[operon][0]

    a, b = RRN_23S["rrnE"]
    loci = operons.search_loci({"23S": genome[a:b]}, LocusSearch(k=4))
    top = loci.row(0, named=True)
    assert (top["contig"], top["start"], top["end"], top["strand"]) == (*locus("rrnE"), "+")
    assert top["verified"] and top["identity"] == 1.0 and top["cigar"] == f"{b - a}="
    others = loci.filter(pl.col("rank") > 1)
    assert sorted(others.select("contig", "start", "end").rows()) == sorted(locus(o) for o in ("rrnB", "rrnG", "rrnH"))
    assert others["verified"].all() and (others["identity"] < 1.0).all() and (others["identity"] > 0.99).all()
    assert (others["aln_score"] < top["aln_score"]).all()
    unaligned = operons.search_loci({"23S": genome[a:b]}, LocusSearch(k=4, verify=False))
    assert unaligned["contig"][0] != "rrnE"  # what the embedding alone would have put first
    # rrnH's copy given as its reverse complement
    a, b = RRN_23S["rrnH"]
    top = operons.search_loci({"23S-H": reverse_complement(genome[a:b])}, LocusSearch(k=4)).row(0, named=True)
    assert (top["contig"], top["start"], top["end"], top["strand"], top["identity"]) == (*locus("rrnH"), "-", 1.0)
    # rrnB's, identical to rrnG's: an equally good copy first, then the other
    a, b = RRN_23S["rrnB"]
    loci = operons.search_loci({"23S-B": genome[a:b]}, LocusSearch(k=4))
    assert {loci.row(i, named=True)["contig"] for i in (0, 1)} == {"rrnB", "rrnG"}
    assert loci["identity"][:2].to_list() == [1.0, 1.0] and loci["identity"][2] < 1.0


def test_a_shuffled_query_has_no_locus_with_an_evalue_below_0_01(index, ecoli_sequence):
    rng = np.random.default_rng(7)
    queries = {}
    for i, start in enumerate(rng.integers(0, len(ecoli_sequence) - 2000, 12)):
        piece = np.frombuffer(ecoli_sequence[start:start + 2000], dtype=np.uint8).copy()
        rng.shuffle(piece)
        queries[f"shuffled{i}"] = piece.tobytes()
    loci = index.search_loci(queries, LocusSearch(k=5))
    assert set(loci["query"]) == set(queries)
    top = loci.filter(pl.col("rank") == 1)
    assert (top["evalue"] >= 0.01).all(), top.select("query", "score", "windows", "evalue", "verified")
    assert not loci["verified"].any()  # nothing aligns significantly
    # while the unshuffled queries are found, verified, with tiny E-values
    real = index.search_loci({"real": ecoli_sequence[50_000:52_000]}, LocusSearch(k=1)).row(0, named=True)
    assert real["verified"] and real["evalue"] < 1e-100


def test_a_chain_never_maps_a_query_span_onto_a_target_span_outside_its_gap_limit():
    """Chains may absorb at most one stride of indels: pieces 250 bp apart on the query whose hits
    lie 5 kb apart, or 600 bp apart, on the same contig and strand are separate loci."""
    size, stride = 500, 250

    def hits(targets: list[int], strand: str = "+") -> pl.DataFrame:
        n = len(targets)
        return pl.DataFrame({
            "query": ["q"] * n, "piece": list(range(n)), "query_start": [i * stride for i in range(n)],
            "query_end": [i * stride + size for i in range(n)], "genome": ["g"] * n, "contig": ["c"] * n,
            "start": targets, "end": [t + size for t in targets], "strand": [strand] * n,
            "score": [0.9] * n, "x": [5.0] * n, "ambiguous": [False] * n})

    consistent = chain(hits([10_000, 10_250, 10_500, 10_750]), size, stride, 5, {"q": 4})
    assert consistent.height == 1 and consistent.row(0, named=True)["windows"] == 4
    for targets in ([10_000, 10_250, 15_000, 15_250], [10_000, 10_850], [10_000, 10_250, 10_500, 11_400]):
        loci = chain(hits(targets), size, stride, 5, {"q": 4})
        assert loci.height > 1, targets
    minus = chain(hits([10_750, 10_500, 10_250, 10_000], "-"), size, stride, 5, {"q": 4})
    assert minus.height == 1 and minus.row(0, named=True)["windows"] == 4
    assert chain(hits([10_000, 10_250, 10_500, 10_750], "-"), size, stride, 5, {"q": 4}).height > 1
    # any hits at all: no locus's target span differs from its query span by more than a stride
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 8
        loci = chain(hits(list(10_000 + np.cumsum(rng.integers(-300, 800, n)))), size, stride, 20, {"q": n})
        query_span = loci["query_end"] - loci["query_start"]
        target_span = loci["end"] - loci["start"]
        assert ((target_span - query_span).abs() <= stride).all()


def test_deep_hits_are_kept_only_where_another_piece_could_chain_with_them():
    """Past ``lone_rank`` in its piece's list, a hit stays only when hits of two other pieces lie on
    its diagonal (within a stride) on other windows: a chance hit deep in one list is dropped, and
    so is a chance pair, but the windows of a diverged copy that rank deep in every piece are
    chained."""
    size, stride = 500, 250
    rows = []
    for piece in range(4):
        rows.append((piece, 1, 50_000 + 997 * piece))  # the top hit of each piece: scattered
        rows.append((piece, 150, 10_000 + piece * stride))  # a copy found deep in every piece
    rows.append((2, 180, 90_000))  # a chance hit, deep and alone
    rows.append((1, 190, 70_000))  # two pieces deep on the same window: a stride off each other's diagonal
    rows.append((2, 190, 70_000))
    rows.append((0, 170, 30_000))  # a chance pair on one diagonal
    rows.append((1, 170, 30_000 + stride))
    n = len(rows)
    hits = pl.DataFrame({
        "query": ["q"] * n, "piece": [p for p, _, _ in rows], "rank": [r for _, r, _ in rows],
        "query_start": [p * stride for p, _, _ in rows], "query_end": [p * stride + size for p, _, _ in rows],
        "genome": ["g"] * n, "contig": ["c"] * n, "start": [t for _, _, t in rows], "end": [t + size for _, _, t in rows],
        "strand": ["+"] * n, "score": [0.6] * n, "x": [1.0] * n, "ambiguous": [False] * n})
    loci = chain(hits, size, stride, 50, {"q": 4}, lone_rank=20)
    spans = set(loci.select("start", "end", "windows").rows())
    assert (10_000, 10_000 + 3 * stride + size, 4) in spans  # the deep copy, chained whole
    assert not any(start in (90_000, 70_000, 30_000) for start, _, _ in spans)
    assert loci.height == 5  # the copy and the four scattered top hits
    assert chain(hits, size, stride, 50, {"q": 4}).height == 8  # without lone_rank every hit counts


def test_a_diverged_query_finds_its_source_among_many_copies(tmp_path, genome):
    """30 kb of E. coli and 24 copies of it mutated at 15%: 2-kb queries mutated at 27% (further
    from every copy than from the source) must find the source first. Among the copies its windows
    can rank deep in each piece's list, which the deep search (200 hits per piece) reaches."""
    from genembed.search.build import build_index
    from genembed.run.pipeline import embed_genome as drive

    rng = np.random.default_rng(1)
    source = genome[1_000_000:1_030_000]
    fasta = tmp_path / "copies.fa"
    fasta.write_bytes(b">source\n" + source + b"\n" + b"".join(
        b">copy%d\n%s\n" % (i, mutate(source + genome[:100], len(source), 0.15, 0.1, rng)) for i in range(24)))
    plan = default_plan()
    build_index([drive(plan, fasta, "copies", tmp_path / "results")[0]], tmp_path / "index", plan)
    queries = {}
    for i in range(30):
        a = int(rng.integers(0, len(source) - 2100))
        q = mutate(source[a : a + 2100], 2000, 0.27, 0.1, rng)
        queries[f"q{i}"] = reverse_complement(q) if i % 2 else q
    ix = Index.open(tmp_path / "index")
    top = ix.search_loci(queries, LocusSearch(k=3)).filter(pl.col("rank") == 1)
    ix.close()
    assert top.height == 30 and (top["contig"] == "source").sum() >= 27 and top["verified"].all()


def _replay(cigar: str, query: bytes, target: bytes) -> tuple[int, int, int, int]:
    """Matches, mismatches, gap opens and gap bases, counted by walking the CIGAR over the sequences."""
    import re

    q = t = matches = mismatches = opens = gaps = 0
    for n, op in re.findall(r"(\d+)([=XID])", cigar):
        n = int(n)
        if op in "=X":
            same = sum(query[q + i] == target[t + i] for i in range(n))
            assert same == (n if op == "=" else 0), f"{op} run over {'different' if op == '=' else 'equal'} bases"
            matches, mismatches = matches + same, mismatches + n - same
            q, t = q + n, t + n
        else:
            opens, gaps = opens + 1, gaps + n
            q, t = (q + n, t) if op == "I" else (q, t + n)
    assert (q, t) == (len(query), len(target))  # the CIGAR spans exactly the reported query and target
    return matches, mismatches, opens, gaps


def test_paf_and_m8_counts_of_a_verified_locus_equal_the_aligners(index, ecoli_sequence):
    rng = np.random.default_rng(3)
    query = reverse_complement(mutate(ecoli_sequence[120_000:125_000], 2_000, 0.08, 0.1, rng))
    loci = index.with_lengths(index.search_loci({"q": query}, LocusSearch(k=3)), {"q": len(query)})
    top = loci.row(0, named=True)
    assert top["verified"] and top["strand"] == "-" and 120_000 <= top["start"] < top["end"] <= 125_000
    target = ecoli_sequence[top["start"]:top["end"]]
    q = reverse_complement(query)[len(query) - top["query_end"]:len(query) - top["query_start"]]
    counts = _replay(top["cigar"], q, target)
    assert counts == cigar_counts(top["cigar"]) == (top["matches"], top["mismatches"], top["gap_opens"], top["gaps"])
    assert top["matches"] + top["mismatches"] + top["gaps"] == top["aligned"]
    # parasail, asked on its own for the best local alignment of the query to that stretch
    matrix = parasail.matrix_create("ACGT", BLASTN.match, BLASTN.mismatch)
    own = parasail.sw_stats_striped_32(q.decode(), target.decode(), BLASTN.gap_open + BLASTN.gap_extend,
                                       BLASTN.gap_extend, matrix)
    assert own.score == top["aln_score"] and own.matches == top["matches"] and own.length == top["aligned"]
    paf = format_hits(loci, "paf").splitlines()[0].split("\t")
    assert paf[4] == "-" and [int(x) for x in paf[7:11]] == [top["start"], top["end"], own.matches, own.length]
    assert f"AS:i:{own.score}" in paf and f"NM:i:{top['mismatches'] + top['gaps']}" in paf
    assert f"cg:Z:{top['cigar']}" in paf and "vf:i:1" in paf
    m8 = format_hits(loci, "m8").splitlines()[0].split("\t")
    assert float(m8[2]) == round(100 * own.matches / own.length, 2)
    assert [int(x) for x in m8[3:6]] == [own.length, top["mismatches"], top["gap_opens"]]
    assert [int(x) for x in m8[8:10]] == [top["end"], top["start"] + 1]  # minus strand: sstart > send, 1-based


def test_a_bad_record_is_skipped_with_one_warning_and_the_rest_answered(tmp_path, default_index, ecoli_sequence):
    fasta = tmp_path / "q.fa"
    fasta.write_text(f">a\n{ecoli_sequence[5_000:6_000].decode()}\n>gap\n{'N' * 700}\n>rna\nACGUACGUACGU\n"
                     f">b\n{ecoli_sequence[9_000:10_000].decode()}\n")
    base = [sys.executable, "-m", "genembed.run.cli", "query", "--index", str(default_index["dir"]), "--fasta", str(fasta),
            "-k", "1"]
    out = tmp_path / "hits.tsv"
    res = subprocess.run(base + ["--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("genembed")]
    assert lines == [
        f"genembed: warning: {fasta}: query 'gap' skipped: no A, C, G or T (only N or other ambiguity codes): nothing to search for",
        f"genembed: warning: {fasta}: query 'rna' skipped: characters that are not IUPAC nucleotides: 'U'",
        "genembed: 2 of 4 queries skipped, 2 answered"]
    hits = pl.read_csv(out, separator="\t")
    assert [(h["query"], h["start"], h["verified"]) for h in hits.iter_rows(named=True)] == [("a", 5_000, True), ("b", 9_000, True)]
    strict = tmp_path / "strict.tsv"
    res = subprocess.run(base + ["--strict", "--out", str(strict)], capture_output=True, text=True)
    assert res.returncode == 1 and not strict.exists()
    assert res.stderr.strip().splitlines() == [
        f"genembed: error: {fasta}: query 'gap': no A, C, G or T (only N or other ambiguity codes): nothing to search"
        " for (leave out --strict to skip such records)"]


def test_query_pieces_share_one_pass_and_embed_as_each_piece_alone(index, ecoli_sequence):
    """The traced encoder the index keeps records the model's reach, so the overlapping pieces of a
    batch of queries come from one pass along them: the same vectors as embedding each piece."""
    from genembed.search.loci import pieces
    from genembed.encode.scan import Scanner

    embedder, tokenizer = index.encoder._load()
    assert type(embedder.model).__name__ == "_Traced" and Scanner(embedder, tokenizer, 10_000).reach == 20
    assert hasattr(embedder.model, "edge_states")  # window edges from the traced edge methods, not whole rows
    queries = {"a": ecoli_sequence[1_000:3_100], "b": ecoli_sequence[7_333:8_333], "c": ecoli_sequence[9_000:9_400]}
    cut = [(name, a, b) for name, seq in queries.items() for a, b in pieces(len(seq), 500, 250)]
    shared = index.encoder.embed_pieces(queries, cut, 500)
    alone = index.encoder.embed([queries[n][a:b] for n, a, b in cut])
    assert len(cut) == 12 and np.abs(shared - alone).max() < 2e-3
