"""Search quality and speed on genomes the default model never saw: genembed's loci search
(`Index.search_loci`, embedding only and verified by alignment) against minimap2 (mappy, in process,
default preset and asm20) and BLAST (`blastn -task megablast` and `-task dc-megablast`). Not a test:
it prints numbers.

Queries are 2-kb pieces cut at random (seeded) offsets from ``--fasta`` (default: the bundled
C. elegans and A. thaliana slices), from the chromosomes no bundled model was trained on (C. elegans
IV, V, X; A. thaliana Chr4, Chr5: see resources/training/README.md) where a genome has them, pieces
with more than 1% N drawn again. Each piece is mutated at 0, 5, 10, 20 and 30% (substitutions at rate r plus 1-3 bp
indels at r/10, as `genembed evaluate` mutates) and every second one is reverse-complemented; the
same pieces serve every rate. ``--nulls`` more queries are shuffled genome pieces, with no homolog.

The database holds the bundled genomes (E. coli, C. elegans and A. thaliana slices) plus any
``--fasta`` not among them: an index built with the default model and settings (500-bp windows
every 250 bp), cached under ``--work``, or ``--index DIR``; minimap2 and BLAST search a plain
FASTA of the genome copies that index keeps. A query is right at top 1 when the top hit overlaps
its source by half (of the shorter of the two); "right strand" also wants the hit's strand. A
source that minimap2 maps equally well (matching bases within 1%, over 90% of it) elsewhere is
duplicated: each equally good copy counts as right. Candidate recall: the source (or a copy) is
among all hits returned (k = 10; for genembed's embedding-only run, among its 20 candidate loci,
what verification aligns: recall before ranking). Queries/s: one warm batch over all queries, the fastest of
``--repeat`` for genembed and BLAST (models, indexes and
databases loaded first; minimap2 maps on one thread, BLAST on two). Nulls: share whose top hit
has an E-value below 0.01.

``--scale`` (slow: embeds up to the largest size) adds databases of about ``--scale-sizes`` Mbp,
the bundled genomes plus copies mutated at 15% (written as FASTA under ``--work``), and times the
20%-mutated queries against each for genembed (verified) and blastn dc-megablast.

    .venv/bin/python benchmarks/search.py [--queries 40] [--nulls 100] [--fasta A.fa.gz ...]
        [--index DIR] [--work benchmarks/logs/search-work] [--scale] [--scale-sizes 10,100] [--model DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from genembed.search.query import CANDIDATES, LocusSearch
from genembed.encode.embed import Embedder
from quality import HELD_OUT  # noqa: E402  (genome -> (FASTA, chromosomes no bundled model was trained on))

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "resources/example"
BUNDLED = sorted([*EXAMPLE.glob("*.fa.gz"), *EXAMPLE.glob("*.fna.gz")])
QUERIED = [EXAMPLE / "C.elegans.fa.gz", EXAMPLE / "A.thaliana.fa.gz"]
MODEL = REPO / "resources/models/genembed-conv"
RATES = (0.0, 0.05, 0.10, 0.20, 0.30)
QUERY_BP, MARGIN, MAX_N = 2000, 32, 0.01
K, EVALUE = 10, 0.01
COPY_RATE = 0.15  # the mutated genome copies of --scale
ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
CODE = np.full(256, 4, dtype=np.uint8)
CODE[ACGT] = np.arange(4)


class Hit(NamedTuple):
    """A hit or a known locus: 0-based half-open, strand ``+``, ``-`` or ``.`` (unknown)."""

    genome: str
    contig: str
    start: int
    end: int
    strand: str


@dataclass
class Query:
    name: str
    seq: bytes
    rate: float | None  # None: a null query
    source: int  # the piece it was cut from (-1 for a null)
    strand: str  # of the query on its source: "-" when reverse-complemented


@dataclass
class Run:
    """One method's answers: hits per query, best first; the top hit's E-value per query (None: the
    method gives none); wall seconds of the whole batch."""

    hits: dict[str, list[Hit]]
    evalues: dict[str, float] | None
    seconds: float


def genome_name(path: Path) -> str:
    """A genome's name from its file name, as `genembed embed` users name them (C.elegans.fa.gz -> C.elegans)."""
    name = path.name
    for suffix in (".gz", ".fa", ".fna", ".fasta", ".fas"):
        name = name.removesuffix(suffix)
    return name


def key(parts: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(parts)).encode()).hexdigest()[:10]


# --- the database -------------------------------------------------------------------------------


def build_index(fastas: dict[str, Path], work: Path) -> Path:
    """An index of these genomes (name -> FASTA) under ``work``, reused when built before. Genomes are
    embedded once into ``work/embeddings`` (shared by every index here), as `genembed embed` does."""
    model = hashlib.sha1((MODEL / "model.safetensors").read_bytes()).hexdigest()[:10]
    out = work / f"index-{key([*fastas, model])}"  # another default model: another index
    if (out / "manifest.json").is_file():
        return out
    from genembed.search.build import build_index as build
    from genembed.data.layout import discover
    from genembed.encode.models import ModelSpec
    from genembed.run.pipeline import embed_genome
    from genembed.encode.plan import RunPlan
    from genembed.encode.tokenize import TokenizerSpec

    started = time.perf_counter()
    plan = RunPlan.make(ModelSpec(str(MODEL)), TokenizerSpec("kmer", 1), {"size": 500, "stride": 250})
    root, embedder = work / "embeddings", Embedder.for_plan(plan)
    for name, fasta in fastas.items():
        _, kept, n = embed_genome(plan, fasta, name, root, embedder)
        print(f"  {name}: {n:,} windows embedded now, {len(kept)} shards kept", file=sys.stderr)
    build([g for g in discover(root) if g.name in fastas], out, plan)
    print(f"index of {', '.join(fastas)} built in {time.perf_counter() - started:.0f} s: {out}", file=sys.stderr)
    return out


def write_fasta(index: Any, path: Path) -> dict[str, tuple[str, str]]:
    """A plain FASTA of the genome copies an index keeps, one record per contig named s0, s1, ...
    (names minimap2 and BLAST keep as they are); returns record -> (genome, contig). Kept if present."""
    ids = {f"s{i}": (g, c) for i, (g, c) in enumerate(
        (g, c) for g in sorted(index.manifest["genomes"]) for c in index.genome(g).contigs)}
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            for rid, (g, c) in ids.items():
                seq = index.genome(g).fetch(c, 0, index.genome(g).contigs[c])
                fh.write(b">" + rid.encode() + b"\n")
                fh.writelines(seq[i : i + 80] + b"\n" for i in range(0, len(seq), 80))
        tmp.rename(path)
    return ids


# --- queries ------------------------------------------------------------------------------------


def mutate_fast(seq: bytes, rate: float, rng: np.random.Generator) -> bytes:
    """``seq`` with substitutions at ``rate`` and 1-3 bp indels at ``rate / 10`` (vectorised, for genomes)."""
    a = np.frombuffer(seq, dtype=np.uint8).copy()
    code = CODE[a]
    sub = (rng.random(len(a)) < rate) & (code < 4)
    a[sub] = ACGT[(code[sub] + rng.integers(1, 4, int(sub.sum()))) % 4]
    events = np.flatnonzero(rng.random(len(a)) < rate / 10)
    lengths = rng.integers(1, 4, len(events))
    deletion = rng.random(len(events)) < 0.5
    keep = np.ones(len(a), dtype=bool)
    gone = (events[deletion, None] + np.arange(3))[np.arange(3) < lengths[deletion, None]]
    keep[gone[gone < len(a)]] = False
    at = np.repeat(events[~deletion], lengths[~deletion])
    a = np.insert(a, at, ACGT[rng.integers(0, 4, len(at))])
    return a[np.insert(keep, at, True)].tobytes()


def sample_sources(index: Any, genomes: list[str], n: int, rng: np.random.Generator) -> list[tuple[Hit, bytes]]:
    """``n`` source pieces (locus, sequence with ``MARGIN`` bases after it), in turn from each genome,
    contigs by length (only the held-out ones of a genome that has some), drawn again while over
    ``MAX_N`` N."""
    out = []
    while len(out) < n:
        g = genomes[len(out) % len(genomes)]
        held = HELD_OUT.get(g, (None, set()))[1]
        contigs = {c: n_bp for c, n_bp in index.genome(g).contigs.items()
                   if n_bp >= QUERY_BP + MARGIN and (not held or c in held)}
        lengths = np.array(list(contigs.values()), dtype=float)
        contig = list(contigs)[int(rng.choice(len(contigs), p=lengths / lengths.sum()))]
        start = int(rng.integers(0, contigs[contig] - QUERY_BP - MARGIN + 1))
        seq = index.genome(g).fetch(contig, start, start + QUERY_BP + MARGIN)
        if (CODE[np.frombuffer(seq[:QUERY_BP], dtype=np.uint8)] == 4).mean() <= MAX_N:
            out.append((Hit(g, contig, start, start + QUERY_BP, "+"), seq))
    return out


def make_queries(sources: list[tuple[Hit, bytes]], nulls: int, rng: np.random.Generator) -> list[Query]:
    """Every source at every rate (every second one reverse-complemented), then the shuffled nulls."""
    from genembed.data.windows import mutate
    from genembed.encode.tokenize import reverse_complement

    queries = []
    for rate in RATES:
        for i, (_, seq) in enumerate(sources):
            q = mutate(seq, QUERY_BP, rate, 0.1, rng)
            rc = i % 2 == 1
            queries.append(Query(f"r{round(rate * 100):02d}_{i}", reverse_complement(q) if rc else q, rate, i,
                                 "-" if rc else "+"))
    for i in range(nulls):
        seq = sources[int(rng.integers(0, len(sources)))][1][:QUERY_BP]
        queries.append(Query(f"null_{i}", rng.permutation(np.frombuffer(seq, dtype=np.uint8)).tobytes(), None, -1, "+"))
    return queries


# --- methods ------------------------------------------------------------------------------------


def run_genembed(index: Any, queries: list[Query], verify: bool, repeat: int = 1, k: int = K) -> Run:
    """`search_loci` over all queries in one warm call (after one warm-up query), ``k`` loci each;
    the fastest of ``repeat`` calls (this shared machine's speed varies from minute to minute)."""
    batch = {q.name: q.seq for q in queries}
    index.search_loci({"warm": queries[0].seq}, LocusSearch(k=k, verify=verify))  # loads the encoder and the calibration
    seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        loci = index.search_loci(batch, LocusSearch(k=k, verify=verify))
        seconds = min(seconds, time.perf_counter() - started)
    hits: dict[str, list[Hit]] = {q.name: [] for q in queries}
    evalues: dict[str, float] = {}
    for row in loci.sort(["query", "rank"]).iter_rows(named=True):
        hits[row["query"]].append(Hit(row["genome"], row["contig"], row["start"], row["end"], row["strand"]))
        evalues.setdefault(row["query"], row["evalue"])
    return Run(hits, evalues, seconds)


def mappy_hits(aligner: Any, seq: bytes, ids: dict[str, tuple[str, str]]) -> list[Hit]:
    """minimap2's hits, the first primary one first."""
    found = list(aligner.map(seq.decode()))
    found.sort(key=lambda h: not h.is_primary)  # stable: minimap2's order otherwise
    return [Hit(*ids[h.ctg], h.r_st, h.r_en, "+" if h.strand > 0 else "-") for h in found]


def run_mappy(aligner: Any, queries: list[Query], ids: dict[str, tuple[str, str]]) -> Run:
    started = time.perf_counter()
    hits = {q.name: mappy_hits(aligner, q.seq, ids)[:K] for q in queries}
    return Run(hits, None, time.perf_counter() - started)


def ensure_blast() -> str | None:
    """None when blastn and makeblastdb are there (installing ncbi-blast+ with apt-get if need be),
    else why not."""
    if shutil.which("blastn") and shutil.which("makeblastdb"):
        return None
    if not shutil.which("apt-get"):
        return "blastn not found and no apt-get to install ncbi-blast+"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "ncbi-blast+"]
    for steps in ([install], [["apt-get", "update"], install]):
        print(f"installing BLAST: {' && '.join(' '.join(s) for s in steps)}", file=sys.stderr)
        if all(subprocess.run(s, capture_output=True, env=env).returncode == 0 for s in steps) and shutil.which("blastn"):
            return None
    return "blastn not found and `apt-get install -y ncbi-blast+` failed (not root, or offline?)"


def make_blastdb(fasta: Path) -> Path:
    db = fasta.with_suffix("")
    if not Path(f"{db}.ndb").is_file() and not Path(f"{db}.nin").is_file():
        subprocess.run(["makeblastdb", "-in", str(fasta), "-dbtype", "nucl", "-out", str(db)], check=True,
                       capture_output=True)
    return db


def run_blast(db: Path, queries: list[Query], task: str, ids: dict[str, tuple[str, str]], work: Path,
              repeat: int = 1) -> Run:
    """One blastn call over all queries (the fastest of ``repeat``, as genembed is timed); a query's
    hits in blastn's order (best bitscore first)."""
    fasta = work / "queries.fa"
    fasta.write_bytes(b"".join(b">" + q.name.encode() + b"\n" + q.seq + b"\n" for q in queries))
    seconds = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run(["blastn", "-task", task, "-query", str(fasta), "-db", str(db), "-outfmt",
                              "6 qseqid sseqid sstart send evalue bitscore", "-max_target_seqs", str(K),
                              "-num_threads", "2"], check=True, capture_output=True, text=True).stdout
        seconds = min(seconds, time.perf_counter() - started)
    hits: dict[str, list[Hit]] = {q.name: [] for q in queries}
    evalues: dict[str, float] = {}
    for line in out.splitlines():
        name, sid, s, e, evalue, _ = line.split("\t")
        s, e = int(s), int(e)
        hits[name].append(Hit(*ids[sid], min(s, e) - 1, max(s, e), "+" if s <= e else "-"))
        evalues.setdefault(name, float(evalue))
    return Run(hits, evalues, seconds)


# --- scoring ------------------------------------------------------------------------------------


def overlaps(a: Hit, b: Hit) -> bool:
    """Same contig, overlapping by half of the shorter."""
    shared = min(a.end, b.end) - max(a.start, b.start)
    return a.genome == b.genome and a.contig == b.contig and shared >= 0.5 * min(a.end - a.start, b.end - b.start)


def equal_copies(aligner: Any, sources: list[tuple[Hit, bytes]], ids: dict[str, tuple[str, str]]) -> list[list[Hit]]:
    """Per source, its locus and every other locus minimap2 maps it to as well (matching bases within
    1% of the best, over 90% of the piece); a copy's strand is its orientation to the source."""
    out = []
    for locus, seq in sources:
        found = [h for h in aligner.map(seq[:QUERY_BP].decode()) if h.q_en - h.q_st >= 0.9 * QUERY_BP]
        best = max((h.mlen for h in found), default=0)
        copies = [locus]
        for h in found:
            hit = Hit(*ids[h.ctg], h.r_st, h.r_en, "+" if h.strand > 0 else "-")
            if h.mlen >= 0.99 * best and not any(overlaps(hit, c) for c in copies):
                copies.append(hit)
        out.append(copies)
    return out


def judge(q: Query, hit: Hit, copies: list[Hit]) -> tuple[bool, bool]:
    """(the hit is the source or an equally good copy, and on the query's strand there)."""
    where = [c for c in copies if overlaps(hit, c)]
    flip = {"+": "-", "-": "+"}
    return bool(where), any(hit.strand == (q.strand if c.strand == "+" else flip[q.strand]) for c in where)


def top1(run: Run, queries: list[Query], copies: list[list[Hit]]) -> tuple[int, int]:
    """Queries right at top 1, and of them on the right strand."""
    right = [judge(q, run.hits[q.name][0], copies[q.source]) for q in queries if run.hits[q.name]]
    return sum(r for r, _ in right), sum(r and s for r, s in right)


def recall(run: Run, queries: list[Query], copies: list[list[Hit]]) -> int:
    return sum(any(judge(q, h, copies[q.source])[0] for h in run.hits[q.name][:K]) for q in queries)


def null_share(run: Run, nulls: list[Query]) -> str:
    if run.evalues is None:  # minimap2 has no E-value: how many nulls get any hit
        return f"n/a ({sum(bool(run.hits[q.name]) for q in nulls)}/{len(nulls)} hit)"
    low = sum(run.evalues.get(q.name, np.inf) < EVALUE for q in nulls)
    return f"{low}/{len(nulls)} ({low / max(1, len(nulls)):.0%})"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


# --- scale --------------------------------------------------------------------------------------


def scale_genomes(index: Any, size_bp: int, work: Path) -> dict[str, Path]:
    """The index's genomes plus copies of them mutated at ``COPY_RATE`` (in turn, the last one cut
    short) up to about ``size_bp``; copies are written once under ``work/copies``."""
    genomes = {g: index.dir / p for g, p in index.manifest["genomes"].items()}
    sizes = {g: sum(index.genome(g).contigs.values()) for g in genomes}
    total, j = sum(sizes.values()), 0
    names = sorted(genomes)
    while total < size_bp:
        base = names[j % len(names)]
        want = min(sizes[base], size_bp - total)
        name = f"copy{j // len(names)}-{base}" + ("" if want == sizes[base] else f"-{want}")
        path = work / "copies" / f"{name}.fa"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(int(key([name]), 16))
            left, records = want, []
            for contig, n in index.genome(base).contigs.items():
                if left < 1000:
                    break
                seq = mutate_fast(index.genome(base).fetch(contig, 0, min(n, left)), COPY_RATE, rng)
                records.append(b">" + contig.encode() + b"\n" + b"\n".join(seq[i : i + 80] for i in range(0, len(seq), 80)))
                left -= min(n, left)
            path.with_suffix(".tmp").write_bytes(b"\n".join(records) + b"\n")
            path.with_suffix(".tmp").rename(path)
        genomes[name] = path
        total += want
        j += 1
    return genomes


def scale(index: Any, fasta: Path, ids: dict[str, tuple[str, str]], queries: list[Query], copies: list[list[Hit]],
          sizes: list[int], work: Path, blast: str | None, repeat: int = 1) -> None:
    """Query time of the 20%-mutated queries against database size (the bundled one first), with top 1 at 20%."""
    from genembed.search.query import Index

    q20 = [q for q in queries if q.rate == 0.20]
    label = "genembed (verified)"
    dbs = [("bundled", index, fasta, ids)]
    for mbp in sizes:
        genomes = scale_genomes(index, mbp * 1_000_000, work)
        big = Index.open(build_index(genomes, work))
        path = work / f"db-{key(list(genomes))}.fa"
        dbs.append((f"{mbp} Mbp (+{len(genomes) - len(index.manifest['genomes'])} copies at 15%)", big, path,
                    write_fasta(big, path)))
    rows = []
    for name, ix, path, db_ids in dbs:
        runs = [run_genembed(ix, q20, True, repeat),
                None if blast else run_blast(make_blastdb(path), q20, "dc-megablast", db_ids, work, repeat)]
        bp = sum(sum(ix.genome(g).contigs.values()) for g in ix.manifest["genomes"])
        row = [name, f"{bp / 1e6:.1f}", f"{ix.faiss.ntotal:,}"]
        for run in runs:
            row += [f"{len(q20) / run.seconds:.1f}", f"{top1(run, q20, copies)[0]}/{len(q20)}"] if run else ["n/a", "n/a"]
        rows.append(row)
        if ix is not index:
            ix.close()
    print(f"\nScale: {len(q20)} queries mutated at 20% against growing databases (queries/s, top 1 at 20%)")
    table(["database", "Mbp", "windows", f"{label} q/s", "top 1", "dc-megablast q/s", "top 1"], rows)


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    global MODEL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fasta", nargs="+", type=Path, default=QUERIED, help="genomes the queries are cut from")
    parser.add_argument("--queries", type=int, default=40, help="queries per mutation rate")
    parser.add_argument("--nulls", type=int, default=100, help="shuffled queries with no homolog")
    parser.add_argument("--index", type=Path, help="a built index to search instead of building one")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks/logs/search-work",
                        help="built indexes, FASTA copies and BLAST databases are kept here for reruns")
    parser.add_argument("--scale", action="store_true", help="also time searches against larger databases (slow)")
    parser.add_argument("--scale-sizes", default="10,100", help="database sizes for --scale, Mbp")
    parser.add_argument("--model", type=Path, default=MODEL,
                        help="the model to index with (default: the bundled default); give another model its own --work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timing of genembed and BLAST: the fastest of this many runs")
    args = parser.parse_args()
    MODEL = args.model.resolve()
    import mappy

    from genembed.search.query import Index

    args.work.mkdir(parents=True, exist_ok=True)
    wanted = {genome_name(p): p for p in args.fasta}
    if args.index:
        index_dir = args.index
    else:
        index_dir = build_index({**{genome_name(p): p for p in BUNDLED}, **wanted}, args.work)
    index = Index.open(index_dir)
    missing = sorted(set(wanted) - set(index.manifest["genomes"]))
    if missing:
        sys.exit(f"{index_dir}: no genome {', '.join(missing)} (the queries' sources); build it without --index")
    fasta = args.work / f"db-{key(list(index.manifest['genomes']))}.fa"
    ids = write_fasta(index, fasta)
    bp = sum(sum(index.genome(g).contigs.values()) for g in index.manifest["genomes"])

    rng = np.random.default_rng(args.seed)
    sources = sample_sources(index, sorted(wanted), args.queries, rng)
    queries = make_queries(sources, args.nulls, rng)
    nulls = [q for q in queries if q.rate is None]

    started = time.perf_counter()
    aligners = {"minimap2": mappy.Aligner(str(fasta), best_n=20, n_threads=2),
                "minimap2 asm20": mappy.Aligner(str(fasta), preset="asm20", best_n=20, n_threads=2)}
    print(f"minimap2 indexes built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    copies = equal_copies(aligners["minimap2"], sources, ids)
    duplicated = sum(len(c) > 1 for c in copies)

    methods: dict[str, Callable[[], Run] | str] = {
        "genembed (embedding)": lambda: run_genembed(index, queries, False, args.repeat, CANDIDATES),
        "genembed (verified)": lambda: run_genembed(index, queries, True, args.repeat),
        **{name: (lambda a=a: run_mappy(a, queries, ids)) for name, a in aligners.items()},
    }
    blast = ensure_blast()
    for task in ("megablast", "dc-megablast"):
        methods[f"blastn {task}"] = blast or (lambda task=task: run_blast(make_blastdb(fasta), queries, task, ids, args.work, args.repeat))
    runs: dict[str, Run | None] = {}
    for name, method in methods.items():
        if isinstance(method, str):
            print(f"{name}: {method}", file=sys.stderr)
            runs[name] = None
            continue
        runs[name] = method()
        print(f"{name}: {len(queries)} queries in {runs[name].seconds:.1f} s", file=sys.stderr)

    print(f"\nDatabase: {', '.join(sorted(index.manifest['genomes']))} ({bp / 1e6:.1f} Mbp, "
          f"{index.faiss.ntotal:,} windows of {index.manifest['settings']['window_size']} bp)."
          f" Queries: {args.queries} pieces of {QUERY_BP} bp per rate from {', '.join(sorted(wanted))},"
          f" half reverse-complemented; {args.nulls} shuffled nulls; seed {args.seed}.")
    print(f"Duplicated sources (another equally good copy in the database, by minimap2): {duplicated}/{len(sources)}")
    if blast:
        print(f"BLAST columns skipped: {blast}")
    names = list(runs)
    cell = lambda run, f: "n/a" if run is None else f(run)  # noqa: E731
    print("\nTop 1 right (of them on the right strand); nulls: top hit with E-value < 0.01")
    rows = []
    for rate in RATES:
        qs = [q for q in queries if q.rate == rate]
        rows.append([f"{rate:.0%}"] + [cell(runs[n], lambda r: "{}/{} ({})".format(
            top1(r, qs, copies)[0], len(qs), top1(r, qs, copies)[1])) for n in names])
    rows.append(["nulls"] + [cell(runs[n], lambda r: null_share(r, nulls)) for n in names])
    rows.append(["queries/s"] + [cell(runs[n], lambda r: f"{len(queries) / r.seconds:.1f}") for n in names])
    table(["mutation", *names], rows)
    print(f"\nCandidate recall: the source (or an equal copy) among all hits returned (k = {K}; genembed"
          f" (embedding): its {CANDIDATES} candidate loci, which verification aligns)")
    rows = []
    for rate in RATES:
        qs = [q for q in queries if q.rate == rate]
        rows.append([f"{rate:.0%}"] + [cell(runs[n], lambda r: f"{recall(r, qs, copies)}/{len(qs)}") for n in names])
    table(["mutation", *names], rows)

    if args.scale:
        sizes = [int(s) for s in args.scale_sizes.split(",") if s.strip()]
        scale(index, fasta, ids, queries, copies, sizes, args.work, blast, args.repeat)
    index.close()


if __name__ == "__main__":
    main()
