"""Whole-sequence vectors (issue 32): one vector per contig and one per genome, the mean of its window
vectors (each unit-normalised first, as the index compares them); genome-by-genome distances, by best
hits of the window sets (an alignment-free ANI of the embeddings) or by the mean vectors, with an
average-linkage (UPGMA) tree in Newick, Mash distances of sourmash sketches beside them, and contig
binning. A genome's vectors come from its own shards only, so adding a genome leaves every other
genome's vectors as they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.io import atomic_path, count_rows
from genembed.data.layout import GenomeInputs
from genembed.data.store import sequence_vectors, unit_windows
from genembed.data.vectors import SequenceVectors, normalise


def best_hit_distance(a: np.ndarray, b: np.ndarray, sample: int = 2_000, seed: int = 0) -> float:
    """The distance of two window sets (unit vectors) by best hits, an alignment-free ANI of the
    embeddings: the mean over (up to ``sample``, drawn with ``seed``) windows of each set of 1 - the
    cosine with its nearest window in the other set (exact, FAISS inner product), both directions
    averaged. Unlike the distance of mean vectors it keeps growing with divergence between two copies
    that drifted apart independently (benchmarks/genomes.py)."""
    import faiss

    rng = np.random.default_rng(seed)

    def one_way(q: np.ndarray, db: np.ndarray) -> float:
        if len(q) > sample:
            q = q[np.sort(rng.choice(len(q), sample, replace=False))]
        index = faiss.IndexFlatIP(db.shape[1])
        index.add(np.ascontiguousarray(db, dtype=np.float32))
        sim, _ = index.search(np.ascontiguousarray(q, dtype=np.float32), 1)
        return float(np.mean(1 - np.clip(sim[:, 0], -1, 1)))

    return (one_way(a, b) + one_way(b, a)) / 2


#: ``distance="auto"``: best hits while the genomes hold at most this many windows in all (their unit
#: vectors are held in memory: 500,000 x 384 float16 is 380 MB), else the mean vectors' distance
BEST_HITS_WINDOWS = 500_000
DISTANCES = ("auto", "mean", "best-hits")


def distances(vectors: Sequence[SequenceVectors]) -> np.ndarray:
    """Cosine distance (1 - cosine similarity) between every two genome vectors."""
    return cosine_distances(np.stack([v.vector for v in vectors]))


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between every two rows, symmetric with a zero diagonal."""
    x = normalise(np.asarray(x, dtype=np.float32)).astype(np.float64)
    d = np.clip(1 - x @ x.T, 0, 2)
    np.fill_diagonal(d, 0)
    return (d + d.T) / 2


def upgma_newick(names: Sequence[str], d: np.ndarray) -> str:
    """The average-linkage (UPGMA) tree of a distance matrix (scipy), in Newick with branch lengths."""
    from scipy.cluster.hierarchy import linkage, to_tree
    from scipy.spatial.distance import squareform

    if len(names) == 1:
        return f"{_label(names[0])};"
    root = to_tree(linkage(squareform(d, checks=False), method="average"))

    def walk(node, parent_height: float) -> str:
        length = max(parent_height - node.dist / 2, 0.0)  # UPGMA: a node's height is half its merge distance
        if node.is_leaf():
            return f"{_label(names[node.id])}:{length:.6g}"
        return f"({walk(node.left, node.dist / 2)},{walk(node.right, node.dist / 2)}):{length:.6g}"

    return walk(root, root.dist / 2).rsplit(":", 1)[0] + ";"


def _label(name: str) -> str:
    return "'" + name.replace("'", "''") + "'" if any(ch in name for ch in " ,;:()[]'") else name


@dataclass
class GenomeComparison:
    """Genomes compared by their window vectors: distances, the UPGMA tree, and, where sourmash is
    installed, Mash distances of MinHash sketches of the same FASTAs with their Spearman agreement."""

    names: list[str]
    distances: np.ndarray  # [genomes, genomes]: best hits or mean vectors (``method`` says which)
    newick: str
    method: str = ""
    sketch: np.ndarray | None = None  # Mash distances (k = 21, scaled 1,000)
    agreement: float | None = None  # Spearman correlation of the two over genome pairs
    sketch_note: str = ""

    def table(self, values: np.ndarray | None = None) -> pl.DataFrame:
        values = self.distances if values is None else values
        return pl.DataFrame({"genome": self.names, **{n: values[:, i] for i, n in enumerate(self.names)}})

    def nearest(self, n: int = 3) -> pl.DataFrame:
        """Each genome's ``n`` nearest other genomes, with their distances (and Mash distances)."""
        rows = []
        for i, name in enumerate(self.names):
            order = [j for j in np.argsort(self.distances[i], kind="stable") if j != i][:n]
            for rank, j in enumerate(order, 1):
                rows.append((name, rank, self.names[j], float(self.distances[i, j]),
                             None if self.sketch is None else float(self.sketch[i, j])))
        return pl.DataFrame(rows, schema={"genome": pl.String, "rank": pl.Int64, "nearest": pl.String,
                                          "distance": pl.Float64, "Mash distance": pl.Float64}, orient="row")


def compare(genomes: Sequence[GenomeInputs], sketch: bool = True, distance: str = "auto",
            sample: int = 2_000, seed: int = 0) -> GenomeComparison:
    """Genome vectors (:func:`sequence_vectors`) and the genomes' distances and tree: by best hits of
    their window sets (:func:`best_hit_distance`; ``auto`` while they hold at most
    :data:`BEST_HITS_WINDOWS` windows) or by their mean vectors (any number of genomes); with ``sketch``,
    Mash distances of sourmash sketches of the genomes' FASTAs when sourmash is installed."""
    if distance not in DISTANCES:
        raise GenembedError(f"genome distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    names = [g.name for g in genomes]
    total = sum(count_rows(w) for g in genomes for w in g.windows)
    if distance == "auto":
        distance = "best-hits" if total <= BEST_HITS_WINDOWS else "mean"
    if distance == "best-hits":
        sets = [unit_windows(g) for g in genomes]
        d = np.zeros((len(sets), len(sets)))
        for i in range(len(sets)):
            for j in range(i + 1, len(sets)):
                d[i, j] = d[j, i] = best_hit_distance(sets[i], sets[j], sample, seed)
        how = (f"best hits: for up to {sample:,} windows of each genome, 1 - the cosine with its nearest window in the "
               "other genome, averaged both ways (an alignment-free ANI of the embeddings)")
    else:
        d = distances([sequence_vectors(g) for g in genomes])  # read only here: best hits read the windows
        how = "1 - the cosine of the genomes' vectors, each the mean of its unit window vectors"
        if total > BEST_HITS_WINDOWS:
            how += f" ({total:,} windows: more than the {BEST_HITS_WINDOWS:,} that best hits hold in memory)"
    out = GenomeComparison(names, d, upgma_newick(names, d), method=how)
    if sketch and len(genomes) > 1:
        out.sketch, out.sketch_note = sketch_distances([g.fasta for g in genomes])
        pairs = np.triu_indices(len(names), 1)
        if out.sketch is not None and len(pairs[0]) >= 3:
            from scipy.stats import spearmanr

            rho = spearmanr(d[pairs], out.sketch[pairs]).statistic
            out.agreement = None if not np.isfinite(rho) else float(rho)
    return out


def sketch_distances(fastas: Sequence[str | Path], ksize: int = 21, scaled: int = 1000) -> tuple[np.ndarray | None, str]:
    """Mash distances of sourmash MinHash sketches of whole FASTAs (None where sourmash is missing), and a
    line saying which."""
    try:
        import sourmash
    except ImportError:
        return None, "sourmash is not installed (pip install sourmash): no k-mer sketch distance to compare with."
    from genembed.data.genome import Genome

    def chunks(path):
        g = Genome(Path(path))
        try:
            for contig, n in g.contigs.items():
                for a in range(0, n, 1 << 24):
                    yield g.fetch(contig, a, min(n, a + (1 << 24) + ksize - 1))
        finally:
            g.close()

    d = mash_distances([minhash(chunks(p), ksize, scaled) for p in fastas], ksize)
    return d, (f"Mash distances of sourmash {sourmash.VERSION} MinHash sketches (k = {ksize}, scaled {scaled:,}) of "
               "the same FASTAs; 1 where two sketches share no k-mer.")


def minhash(chunks, ksize: int = 21, scaled: int = 1000):
    """A sourmash MinHash sketch of sequence chunks (bytes; chunks of one contig overlap by k - 1)."""
    import sourmash

    mh = sourmash.MinHash(n=0, ksize=ksize, scaled=scaled)
    for chunk in chunks:
        mh.add_sequence(chunk.decode(), force=True)
    return mh


def mash_distances(sketches: Sequence, ksize: int = 21) -> np.ndarray:
    """Mash distances (-ln(2J / (1 + J)) / k) between every two sketches; 1 where they share no k-mer."""
    d = np.zeros((len(sketches), len(sketches)))
    for i in range(len(sketches)):
        for j in range(i + 1, len(sketches)):
            jac = sketches[i].jaccard(sketches[j])
            d[i, j] = d[j, i] = 1.0 if jac <= 0 else min(1.0, -np.log(2 * jac / (1 + jac)) / ksize)
    return d


def genome_figure(c: GenomeComparison, path: str | Path) -> str:
    """The UPGMA tree beside the distance heatmap in the tree's order, saved as PNG; an <img> tag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    from genembed.reports.html import save_figure

    n = len(c.names)
    size = min(2 + 0.35 * n, 14)
    fig, (tree_ax, heat_ax) = plt.subplots(1, 2, figsize=(size + 3, size), gridspec_kw={"width_ratios": [1, 2.5]})
    order = list(range(n))
    if n > 1:
        z = linkage(squareform(c.distances, checks=False), method="average")
        order = dendrogram(z, orientation="left", ax=tree_ax, no_labels=True, color_threshold=0,
                           above_threshold_color="#444")["leaves"][::-1]
        tree_ax.set_xlabel("distance")
    tree_ax.set_yticks([])
    for side in ("top", "right", "left"):
        tree_ax.spines[side].set_visible(False)
    im = heat_ax.imshow(c.distances[np.ix_(order, order)], cmap="viridis_r", interpolation="nearest")
    labels = [c.names[i] for i in order] if n <= 60 else []
    heat_ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    heat_ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(im, ax=heat_ax, fraction=0.046, pad=0.04, label="genome distance")
    heat_ax.set_title("genomes ordered by the tree")
    return save_figure(fig, path)


def genome_section(c: GenomeComparison, figure: str) -> str:
    """HTML for a report: the figure, the nearest genomes, and the agreement with the sketch distance."""
    from genembed.reports.html import esc, table

    if len(c.names) < 2:
        return "<p class='muted'>One genome: nothing to compare.</p>"
    agree = ""
    if c.sketch is not None:
        agree = (f"<p>Spearman correlation of the two distances over the {len(c.names) * (len(c.names) - 1) // 2} "
                 f"genome pairs: <b>{c.agreement:.3f}</b>.</p>" if c.agreement is not None else
                 "<p class='muted'>No Spearman correlation with the sketch distance: fewer than 3 genome pairs, or "
                 "the sketch distances are all alike (genomes that share no 21-mer are all at 1).</p>")
    return (f"<p>Distance of two genomes: {esc(c.method)}; the tree is average linkage (UPGMA). "
            f"{esc(c.sketch_note)}</p>" + agree + figure
            + "<p class='muted'>Nearest genomes (click a header to sort):</p>" + table(c.nearest())
            + f"<p class='muted'>Newick: <code>{esc(c.newick)}</code></p>")


def write_comparison(c: GenomeComparison, out: str | Path, prefix: str = "") -> None:
    """``{prefix}distances.tsv``/``.parquet``, ``{prefix}tree.nwk`` and, with sketches,
    ``{prefix}mash_distances.tsv`` in ``out`` (each written atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = c.table()
    with atomic_path(out / f"{prefix}distances.tsv") as tmp:
        table.write_csv(tmp, separator="\t", float_precision=6)
    with atomic_path(out / f"{prefix}distances.parquet") as tmp:
        table.write_parquet(tmp)
    with atomic_path(out / f"{prefix}tree.nwk") as tmp:
        Path(tmp).write_text(c.newick + "\n")
    if c.sketch is not None:
        with atomic_path(out / f"{prefix}mash_distances.tsv") as tmp:
            c.table(c.sketch).write_csv(tmp, separator="\t", float_precision=6)


def kmeans_bins(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means (20 starts) of the rows of ``x`` as unit vectors (cosine geometry): a bin per row."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(x):
        raise GenembedError(f"contig binning: {k} bins for {len(x)} contigs (need 1 to {len(x)})")
    return KMeans(k, n_init=20, random_state=seed).fit(normalise(np.asarray(x, dtype=np.float32))).labels_


def bin_contigs(genomes: Sequence[GenomeInputs], k: int, min_windows: int = 4, seed: int = 0,
                truth: dict[str, str] | None = None) -> tuple[pl.DataFrame, dict[str, float]]:
    """Contig binning: every contig with at least ``min_windows`` windows, binned by k-means on its
    vector (:func:`kmeans_bins`) and, in the same run, on its strand-canonical tetranucleotide
    frequencies (TNF, from the FASTA), the composition baseline of metagenome binning. With ``truth``
    (contig -> source), the adjusted Rand index of each against it. Returns the table (genome,
    contig, windows, bin, tnf_bin, truth) and the ARIs."""
    from sklearn.metrics import adjusted_rand_score

    from genembed.data.genome import Genome
    from genembed.data.windows import canonical_kmer_frequencies

    rows, vectors, tnf = [], [], []
    for g in genomes:
        v = sequence_vectors(g)
        fasta = Genome(g.fasta)
        try:
            for i, (contig, n) in enumerate(v.contigs.iter_rows()):
                if n >= min_windows:
                    rows.append((g.name, contig, n))
                    vectors.append(v.contig_vectors[i])
                    tnf.append(canonical_kmer_frequencies([fasta.fetch(contig, 0, fasta.contigs[contig])], 4)[0])
        finally:
            fasta.close()
    table = pl.DataFrame(rows, schema={"genome": pl.String, "contig": pl.String, "windows": pl.Int64}, orient="row")
    if table.height < k:
        raise GenembedError(f"contig binning: {table.height} contig(s) with at least {min_windows} windows, fewer than {k} bins")
    if truth is not None and table["contig"].is_duplicated().any():
        twice = table.filter(table["contig"].is_duplicated())["contig"][0]
        raise GenembedError(f"contig binning: contig {twice!r} is in two genomes; the truth names contigs, so name them apart")
    table = table.with_columns(pl.Series("bin", kmeans_bins(np.stack(vectors), k, seed)),
                               pl.Series("tnf_bin", kmeans_bins(np.stack(tnf), k, seed)))
    scores: dict[str, float] = {}
    if truth is not None:
        missing = [c for c in table["contig"] if c not in truth]
        if missing:
            raise GenembedError(f"contig binning: the truth names no source for {len(missing)} contig(s), e.g. {missing[0]}")
        table = table.with_columns(pl.col("contig").replace_strict(truth).alias("truth"))
        scores = {"genome vectors": float(adjusted_rand_score(table["truth"], table["bin"])),
                  "TNF": float(adjusted_rand_score(table["truth"], table["tnf_bin"]))}
    return table, scores


def read_truth(path: str | Path) -> dict[str, str]:
    """A two-column TSV (contig, source; a header line is allowed): where each contig came from."""
    try:
        t = pl.read_csv(path, separator="\t", has_header=False, new_columns=["contig", "source"], infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise GenembedError(f"{path}: cannot read the contig truth ({exc})".splitlines()[0]) from None
    if t.height and t.row(0) == ("contig", "source"):
        t = t.slice(1)
    if t["contig"].is_duplicated().any():
        raise GenembedError(f"{path}: contig {t.filter(t['contig'].is_duplicated())['contig'][0]!r} is named twice")
    return dict(t.iter_rows())


def compare_genomes(genomes: Sequence[GenomeInputs], out: str | Path, sketch: bool = True,
                    distance: str = "auto") -> pl.DataFrame:
    """``genembed compare``: ``distances.tsv`` and ``distances.parquet`` (genome by genome, :func:`compare`'s
    distance), ``tree.nwk`` (UPGMA), ``mash_distances.tsv`` where sourmash is installed, and
    ``compare.html`` (tree, heatmap, nearest genomes) in ``out``; returns the distance table."""
    if len(genomes) < 2:
        raise GenembedError("genembed compare: needs at least two embedded genomes")
    from genembed.reports.html import page

    c = compare(genomes, sketch, distance)
    write_comparison(c, out)
    page("genembed compare: genomes by their vectors",
         [("Genomes", genome_section(c, genome_figure(c, Path(out) / "genomes.png")))], Path(out) / "compare.html")
    return c.table()
