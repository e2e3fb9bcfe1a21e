"""Whole-genome vectors (issue 32) against a k-mer sketch, ANI and composition, on real sequence.

Three parts, every method on the same sequences in one run:

1. **Evolved copies with known divergence.** A 1-Mbp stretch of the bundled E. coli genome (the
   ancestor) copied at 0.5-25% substitutions (plus 1-3 bp indels at a tenth of the rate), with
   rearrangements and gene gain and loss scaled with the rate (inversions and translocations of 2-20 kb,
   deletions of 1-5 kb, insertions of 1-5 kb of new sequence). Over every pair of the ancestor and its
   copies, the Spearman correlation of each distance with the true divergence (the chance that a site
   differs: ``1 - (1 - a)(1 - b)``): genome vectors (the mean unit window vector, as ``genembed compare``
   makes them, and the mean joined to the per-dimension standard deviation), the window sets compared by
   best hits (:func:`genembed.reports.compare.best_hit_distance`), the Mash distance of sourmash
   MinHash sketches (k = 21, scaled 1,000) and 100 - ANI of pyskani (each when installed), and the cosine
   distance of strand-canonical tetranucleotide frequencies (TNF).
2. **Contig binning.** Contigs of 2-50 kb (log-uniform lengths) cut from four genomes: the E. coli
   stretch, a 20% copy of it (a sister species of the same composition), the bundled C. elegans and A.
   thaliana slices; shuffled; k-means (k = 4; on unit vectors as ``genembed compare --bins`` does, and
   z-scored) on each method's contig vectors; the adjusted Rand index against the genomes: genome
   vectors against TNF and forward 4-mer counts, over ``--cuts`` independent cuttings (mean, SD, and
   the paired difference to TNF with the number of cuttings where a method is above it).
3. **Scale.** 1,000 synthetic genomes' window vectors written as real shards, then ``genembed
   compare``'s work (vectors read shard by shard, distances, UPGMA tree): seconds and peak memory.

The model is the default config's (``config/config.yaml``); the E. coli, C. elegans I-III and A.
thaliana Chr1-3 sequence here was in its training data (see its model card), the evolved copies were not.

    .venv/bin/python benchmarks/genomes.py [--genomes 1000] [--windows 1000]
"""

from __future__ import annotations

import argparse
import gzip
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
RATES = (0.005, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.25)
COMP = bytes.maketrans(b"ACGT", b"TGCA")  # for inversions


def read_fasta(path: Path) -> dict[str, bytes]:
    out: dict[str, list[bytes]] = {}
    name = None
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if line.startswith(b">"):
                name = line[1:].split()[0].decode()
                out[name] = []
            elif name is not None:
                out[name].append(line.strip().upper())
    return {k: b"".join(v) for k, v in out.items()}


def random_seq(n: int, rng: np.random.Generator) -> bytes:
    return np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].tobytes()


def evolve(seq: bytes, rate: float, rng: np.random.Generator) -> bytes:
    """A copy with substitutions at ``rate``, 1-3 bp indels at a tenth of it, and per Mbp ``40 * rate``
    inversions, translocations, deletions and insertions each (2-20 kb moved or turned, 1-5 kb lost or gained)."""
    x = np.frombuffer(seq, np.uint8).copy()
    hit = rng.random(len(x)) < rate
    bases = np.frombuffer(b"ACGT", np.uint8)
    shift = rng.integers(1, 4, int(hit.sum()))
    idx = np.searchsorted(bases, x[hit])
    x[hit] = bases[(idx + shift) % 4]  # always another base
    pieces, at = [], 0
    for pos in np.sort(rng.choice(len(x), int(len(x) * rate / 10), replace=False)):
        if pos < at:
            continue
        pieces.append(x[at:pos].tobytes())
        n = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            pieces.append(random_seq(n, rng))  # insertion
            at = pos
        else:
            at = pos + n  # deletion
    pieces.append(x[at:].tobytes())
    out = b"".join(pieces)
    events = int(round(40 * rate * len(out) / 1e6))
    for _ in range(events):
        n = int(rng.integers(2000, 20000))
        a = int(rng.integers(0, len(out) - n))
        out = out[:a] + out[a : a + n][::-1].translate(COMP) + out[a + n :]  # inversion
        n = int(rng.integers(2000, 20000))
        a = int(rng.integers(0, len(out) - n))
        piece, rest = out[a : a + n], out[:a] + out[a + n :]
        b = int(rng.integers(0, len(rest)))
        out = rest[:b] + piece + rest[b:]  # translocation
        n = int(rng.integers(1000, 5000))
        a = int(rng.integers(0, len(out) - n))
        out = out[:a] + out[a + n :]  # gene loss
        b = int(rng.integers(0, len(out)))
        out = out[:b] + random_seq(int(rng.integers(1000, 5000)), rng) + out[b:]  # gene gain
    return out


class Vectors:
    """Window vectors of a sequence with the run's model and windows (one pass along it)."""

    def __init__(self):
        from genembed.encode.models import ModelSpec
        from genembed.encode.plan import RunPlan
        from genembed.encode.scan import Scanner
        from genembed.encode.tokenize import TokenizerSpec

        cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
        self.plan = RunPlan.make(ModelSpec(str(REPO / cfg["model"]["path"])), TokenizerSpec.from_config(cfg["tokenizer"]),
                                 cfg["windows"])
        self.scan = Scanner.for_plan(self.plan)
        self.size, self.stride = self.plan.windows.size, self.plan.windows.stride
        self.seconds = 0.0

    def windows(self, seq: bytes) -> np.ndarray:
        from genembed.data.vectors import normalise

        starts = np.arange(0, len(seq) - self.size + 1, self.stride)
        starts = np.array([s for s in starts if seq.count(b"N", s, s + self.size) <= self.size // 10])
        t = time.perf_counter()
        x = self.scan(seq, starts, self.size)
        self.seconds += time.perf_counter() - t
        return normalise(np.asarray(x, dtype=np.float32))


def aggregates(unit: np.ndarray) -> dict[str, np.ndarray]:
    """The genome (or contig) vector two ways: the mean unit window vector (``genembed compare``) and
    the mean joined to the per-dimension standard deviation (a second-moment sketch), each half unit."""
    from genembed.data.vectors import mean_vector

    mean = mean_vector(unit)
    sd = unit.std(0)
    both = np.concatenate([mean / max(np.linalg.norm(mean), 1e-12), sd / max(np.linalg.norm(sd), 1e-12)])
    return {"genome vector (mean)": mean, "mean + sd": both}


def tnf(seq: bytes, canonical: bool = True) -> np.ndarray:
    """Strand-canonical tetranucleotide frequencies (136; TNF), or the 256 forward-strand ones."""
    from genembed.data.windows import canonical_kmer_frequencies, kmer_frequencies

    return (canonical_kmer_frequencies([seq], 4) if canonical else kmer_frequencies([seq], 4))[0]


def sketch_distances(seqs: list[bytes]) -> np.ndarray | None:
    """Mash distances of sourmash MinHash sketches (k = 21, scaled 1,000); None without sourmash."""
    try:
        import sourmash  # noqa: F401
    except ImportError:
        return None
    from genembed.reports.compare import mash_distances, minhash

    return mash_distances([minhash([s]) for s in seqs])


def ani_distances(seqs: list[bytes]) -> tuple[np.ndarray, int] | None:
    """100 - ANI (pyskani) for every pair, 100 where skani reports none (below ~80% ANI); None without pyskani."""
    try:
        import pyskani
    except ImportError:
        return None
    db = pyskani.Database()
    for i, s in enumerate(seqs):
        db.sketch(str(i), s)
    d = np.zeros((len(seqs), len(seqs)))
    missing = 0
    for i, s in enumerate(seqs):
        hits = {int(h.reference_name): h.identity for h in db.query(str(i), s)}
        for j in range(len(seqs)):
            if j != i:
                d[i, j] = 100 * (1 - hits[j]) if j in hits else 100.0
                missing += j not in hits
    return (d + d.T) / 2, missing // 2


def series(vec: Vectors, ancestor: bytes, rng: np.random.Generator) -> tuple[pl.DataFrame, list[bytes]]:
    from scipy.stats import spearmanr

    copies = [ancestor] + [evolve(ancestor, r, rng) for r in RATES]
    rates = (0.0,) + RATES
    truth = np.array([[1 - (1 - a) * (1 - b) if i != j else 0 for j, b in enumerate(rates)] for i, a in enumerate(rates)])
    from genembed.reports.compare import best_hit_distance, cosine_distances

    windows = [vec.windows(s) for s in copies]
    per = [aggregates(w) for w in windows]
    dist = {name: cosine_distances(np.stack([p[name] for p in per])) for name in per[0]}
    hits = np.zeros((len(copies), len(copies)))
    for i in range(len(copies)):
        for j in range(i + 1, len(copies)):
            hits[i, j] = hits[j, i] = best_hit_distance(windows[i], windows[j])
    dist["best hits (window sets)"] = hits
    dist["TNF (canonical 4-mers)"] = cosine_distances(np.stack([tnf(s) for s in copies]))
    if (d := sketch_distances(copies)) is not None:
        dist["sourmash Mash distance (k=21)"] = d
    if (a := ani_distances(copies)) is not None:
        dist["100 - ANI (pyskani)"] = a[0]
        print(f"  pyskani: {a[1]} of {len(copies) * (len(copies) - 1) // 2} pairs below its reporting limit (set to 100)")
    iu = np.triu_indices(len(copies), 1)
    rows = []
    for name, d in dist.items():
        rho = spearmanr(d[iu], truth[iu]).statistic
        to_ancestor = d[0, 1:]
        ordered = spearmanr(to_ancestor, RATES).statistic
        rows.append((name, float(rho), float(ordered), " ".join(f"{v:.3g}" for v in to_ancestor)))
    return pl.DataFrame(rows, schema=["method", "spearman (all pairs)", "spearman (to the ancestor)",
                                      "distance to the ancestor at " + "/".join(f"{r:.1%}" for r in RATES)],
                        orient="row"), copies


def binning(vec: Vectors, genomes: dict[str, bytes], seed: int, cuts: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Contig binning over ``cuts`` independent random cuttings of the genomes. Each genome's windows
    are embedded once; a contig starts and ends on the window grid (lengths log-uniform in 2-50 kb,
    rounded down to the stride), so its windows are the genome's windows inside it (the model's
    windows do not see past their ends: the same vectors as embedding the contig alone). Returns the
    ARI per cutting and method, and their means with the paired difference to TNF."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from genembed.reports.compare import kmeans_bins

    size, stride = vec.size, vec.stride
    grids = {}
    for name, seq in genomes.items():
        starts = np.arange(0, len(seq) - size + 1, stride)
        keep = np.array([seq.count(b"N", s, s + size) <= size // 10 for s in starts])
        grids[name] = (starts[keep], vec.windows(seq))  # Vectors.windows drops the same windows
    rows = []
    for cut in range(cuts):
        rng = np.random.default_rng([seed, cut])
        contigs, labels, per = [], [], []
        for label, (name, seq) in enumerate(genomes.items()):
            starts, unit = grids[name]
            at = 0
            while at < len(seq) - 2000:
                n = int(np.exp(rng.uniform(np.log(2000), np.log(50000)))) // stride * stride
                inside = (starts >= at) & (starts + size <= at + n)
                piece = seq[at : at + n]
                if len(piece) >= 2000 and piece.count(b"N") < len(piece) // 10 and inside.sum() >= 4:
                    contigs.append(piece)
                    labels.append(label)
                    per.append(aggregates(unit[inside]))
                at += n
        order = rng.permutation(len(contigs))
        contigs, labels, per = [contigs[i] for i in order], np.array(labels)[order], [per[i] for i in order]
        feats = {name: np.stack([p[name] for p in per]) for name in per[0]}
        feats["TNF (canonical 4-mers)"] = np.stack([tnf(c) for c in contigs])
        feats["4-mer counts (forward)"] = np.stack([tnf(c, canonical=False) for c in contigs])
        for name, x in feats.items():  # as genembed compare --bins bins them (unit vectors), and z-scored
            z = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
            unit_ari = adjusted_rand_score(labels, kmeans_bins(x, len(genomes), seed))
            z_ari = adjusted_rand_score(labels, KMeans(len(genomes), n_init=20, random_state=seed).fit(z).labels_)
            rows.append((cut, len(contigs), name, float(unit_ari), float(z_ari)))
        if cut == 0:
            print(f"  binning, first cutting: {len(contigs)} contigs of 2-50 kb from {', '.join(genomes)} "
                  f"({', '.join(str(int((labels == i).sum())) for i in range(len(genomes)))})")
    each = pl.DataFrame(rows, schema=["cut", "contigs", "method", "unit", "z"], orient="row")
    tnf_ari = each.filter(pl.col("method") == "TNF (canonical 4-mers)").select("cut", pl.col("unit").alias("tnf_unit"),
                                                                               pl.col("z").alias("tnf_z"))
    paired = each.join(tnf_ari, on="cut").with_columns((pl.col("unit") - pl.col("tnf_unit")).alias("d_unit"),
                                                       (pl.col("z") - pl.col("tnf_z")).alias("d_z"))
    summary = paired.group_by("method", maintain_order=True).agg(
        pl.format("{} ± {}", pl.col("unit").mean().round(3), pl.col("unit").std().round(3)).alias("ARI unit vectors (mean ± SD)"),
        pl.format("{} ± {}", pl.col("z").mean().round(3), pl.col("z").std().round(3)).alias("ARI z-scored (mean ± SD)"),
        pl.format("{} (above in {}/{})", pl.col("d_unit").mean().round(3), (pl.col("d_unit") > 0).sum(), pl.len()
                  ).alias("minus TNF, unit"),
        pl.format("{} (above in {}/{})", pl.col("d_z").mean().round(3), (pl.col("d_z") > 0).sum(), pl.len()
                  ).alias("minus TNF, z-scored"))
    return each, summary


def scale(n_genomes: int, n_windows: int, dim: int, seed: int) -> str:
    from genembed.reports.compare import compare_genomes
    from genembed.data.layout import GenomeInputs
    from genembed.data.store import stitch, write_shard

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        genomes = []
        t = time.perf_counter()
        centres = rng.normal(size=(20, dim)).astype(np.float32)  # 20 clades
        for g in range(n_genomes):
            d = Path(tmp) / f"g{g}"
            d.mkdir()
            x = centres[g % 20] + rng.normal(size=(n_windows, dim)).astype(np.float32)
            ids = np.arange(n_windows, dtype=np.int64)
            write_shard(d / "00000.h5", x, ids, {"model": "synthetic"})
            pl.DataFrame({"window_id": ids, "contig": ["c1"] * n_windows}).write_parquet(d / "00000.parquet")
            genomes.append(GenomeInputs(f"g{g}", d / "genome.fa.gz", None, [d / "00000.parquet"], [d / "00000.h5"]))
        written = time.perf_counter() - t
        t = time.perf_counter()
        compare_genomes(genomes, Path(tmp) / "out", sketch=False, distance="mean")  # synthetic: vectors only
        took = time.perf_counter() - t
        for g in genomes:  # what the workflow's stitch jobs make: each genome's vectors stored with it
            stitch(g.shards, Path(g.shards[0]).parent / "all.h5", g.windows, g.name)
        t = time.perf_counter()
        compare_genomes(genomes, Path(tmp) / "out", sketch=False, distance="mean")
        stored = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"{n_genomes:,} genomes x {n_windows:,} windows x {dim} dims (float16 shards, written in {written:.1f} s): "
            f"genembed compare {took:.2f} s from the shards (vectors read shard by shard, distances, UPGMA tree), "
            f"{stored:.2f} s from the vectors stored with each genome (all.h5); peak RSS {peak:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genomes", type=int, default=1000, help="genomes in the scale part")
    ap.add_argument("--windows", type=int, default=1000, help="windows per genome in the scale part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cuts", type=int, default=10, help="random cuttings of the genomes into contigs (part 2)")
    ap.add_argument("--parts", default="123", help="which parts to run (1: evolved copies, 2: binning, 3: scale)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pl.Config.set_tbl_rows(20), pl.Config.set_tbl_width_chars(200), pl.Config.set_fmt_str_lengths(80)
    ecoli = next(iter(read_fasta(REPO / "resources/example/ecoli_k12_mg1655.fna.gz").values()))
    ancestor = ecoli[:1_000_000]
    copies = None
    vec = Vectors() if "1" in args.parts or "2" in args.parts else None
    if "1" in args.parts:
        t = time.perf_counter()
        table, copies = series(vec, ancestor, rng)
        print(f"1. evolved copies of E. coli 0-1 Mbp at {', '.join(f'{r:.1%}' for r in RATES)} ({time.perf_counter() - t:.0f} s)")
        print(table)
    if "2" in args.parts:
        t = time.perf_counter()
        sister = evolve(ancestor, 0.20, np.random.default_rng([args.seed, 20]))  # the same whichever parts run
        mixed = {"E. coli": ancestor, "E. coli 20% copy": sister,
                 "C. elegans": b"N".join(read_fasta(REPO / "resources/example/C.elegans.fa.gz").values()),
                 "A. thaliana": b"N".join(read_fasta(REPO / "resources/example/A.thaliana.fa.gz").values())}
        _, bins = binning(vec, mixed, args.seed, args.cuts)
        print(f"2. contig binning, {args.cuts} random cuttings ({time.perf_counter() - t:.0f} s)")
        print(bins)
    if vec is not None:
        print(f"   model time {vec.seconds:.0f} s in all")
    if "3" in args.parts:
        print("3. scale: " + scale(args.genomes, args.windows, 384, args.seed))

if __name__ == "__main__":
    main()
