"""Clustering report: spherical k-means (k chosen by silhouette unless configured) or HDBSCAN on
the embeddings, enrichment of each cluster for annotation classes, exemplar windows, UMAP."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from genembed.data.annotation import CLASSES
from genembed.reports.compare import compare, genome_figure, genome_section, write_comparison
from genembed.errors import GenembedError
from genembed.data.vectors import normalise
from genembed.data.io import atomic_path, count_rows
from genembed.data.layout import GenomeInputs
from genembed.reports import html
from genembed.reports.inputs import iter_labeled, make_labelers

log = logging.getLogger(__name__)
CLASS_COLORS = {"rRNA": "#8c564b", "tRNA": "#e377c2", "ncRNA": "#ff7f0e", "upstream": "#d62728", "CDS": "#1f77b4",
                "UTR/intron": "#17becf", "intergenic": "#2ca02c", "unannotated": "#999999"}
SELECTION_SAMPLE = 20_000  # windows the k-means fits for choosing k are trained on
Assign = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ClusterSettings:
    method: str = "kmeans"  # kmeans | hdbscan
    k: int | str = "auto"  # k-means clusters, or auto: the k in [2, k_max] with the best silhouette
    k_max: int = 20
    min_cluster_size: int | None = None  # HDBSCAN; None: 1% of the sample, at least 10
    kmeans_sample: int = 100_000
    umap_sample: int = 5_000  # windows in the UMAP map, the silhouette and the HDBSCAN fit
    exemplars: int = 3
    upstream: int = 200
    downstream: int = 50
    seed: int = 0


@dataclass
class Fit:
    """A clustering of the sample: how to label any window, and how it was chosen."""

    assign: Assign  # normalised vectors -> (cluster, cosine similarity to the cluster centroid)
    n_clusters: int
    description: str
    silhouette: pl.DataFrame  # k, silhouette of k-means fits (the curve in the report)
    chosen_silhouette: float


def cluster_report(genomes: list[GenomeInputs], out_dir: str | Path, settings: ClusterSettings) -> pl.DataFrame:
    """Write clusters.html, clusters.tsv, enrichment.tsv, exemplars.tsv, assignments.parquet, PNG plots
    and the genome level (:mod:`genembed.reports.compare`: genome_distances.tsv/.parquet, genome_tree.nwk,
    genomes.png, and genome_mash_distances.tsv where sourmash is installed) to ``out_dir``; returns the
    per-cluster summary."""
    if settings.method not in ("kmeans", "hdbscan"):
        raise GenembedError(f"clusters.method must be kmeans or hdbscan, not {settings.method!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelers = make_labelers(genomes, settings.upstream, settings.downstream)
    total = sum(count_rows(w) for g in genomes for w in g.windows)
    if total < 3:
        raise GenembedError(f"clustering report: {total} window(s) in all genomes; at least 3 are needed")
    rng = np.random.default_rng(settings.seed)
    keep = min(1.0, settings.kmeans_sample / total)
    vectors, meta = [], []
    for _, table, emb in iter_labeled(genomes, labelers):
        pick = rng.random(len(table)) < keep
        vectors.append(normalise(emb[pick]))
        meta.append(table.filter(pl.Series(pick)).select("genome", "gc_fraction", "annotation_class"))
    sample, sample_meta = np.concatenate(vectors), pl.concat(meta)
    small = np.sort(rng.choice(len(sample), size=min(settings.umap_sample, len(sample)), replace=False))
    fit = _fit(sample, small, settings)

    columns = ["window_id", "genome", "contig", "start", "end", "gc_fraction", "annotation_class"]
    exemplars = pl.DataFrame()
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        parts = []
        for i, (_, table, emb) in enumerate(iter_labeled(genomes, labelers)):
            cluster, similarity = fit.assign(normalise(emb))
            part = table.select(columns).with_columns(pl.Series("cluster", cluster.astype(np.int32)),
                                                      pl.Series("similarity", similarity.astype(np.float32)))
            part.write_parquet(Path(tmp) / f"{i}.parquet")
            parts.append(Path(tmp) / f"{i}.parquet")
            exemplars = _top(pl.concat([exemplars, part]) if exemplars.height else part, settings.exemplars)
        with atomic_path(out / "assignments.parquet") as t:
            pl.scan_parquet(parts).sink_parquet(t)
    assignments = pl.scan_parquet(out / "assignments.parquet")
    summary = _summary(assignments)
    enrichment = enrichment_table(assignments)
    exemplars = exemplars.sort("cluster", "similarity", descending=[False, True]).select(
        "cluster", "similarity", "genome", "contig", "start", "end", "annotation_class", "gc_fraction", "window_id")
    for name, df in (("clusters", summary), ("enrichment", enrichment), ("exemplars", exemplars)):
        with atomic_path(out / f"{name}.tsv") as t:
            df.write_csv(t, separator="\t", float_precision=6 if name == "enrichment" else 4)

    sample_clusters, _ = fit.assign(sample[small])
    figures = _figures(sample[small], sample_meta[small].with_columns(pl.Series("cluster", sample_clusters)),
                       summary, enrichment, fit, out, settings)
    genomes_compared = compare(genomes)  # the genome level: genome vectors, their distances and tree
    write_comparison(genomes_compared, out, prefix="genome_")
    figures["genomes"] = genome_section(genomes_compared, genome_figure(genomes_compared, out / "genomes.png"))
    _write_html(out / "clusters.html", summary, enrichment, exemplars, figures, fit, settings, total, len(small), genomes)
    return summary


def _fit(sample: np.ndarray, small: np.ndarray, settings: ClusterSettings) -> Fit:
    """k-means with k given or chosen by silhouette, or HDBSCAN on a UMAP of the small sample."""
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(settings.seed)
    select = sample[np.sort(rng.choice(len(sample), size=min(SELECTION_SAMPLE, len(sample)), replace=False))]
    scores = []
    for k in range(2, min(settings.k_max, max(2, len(select) // 39), len(small) - 1) + 1):  # FAISS: >= 39 points per centroid
        labels, _ = _kmeans(select, k, settings.seed)(sample[small])
        sil = silhouette_score(sample[small], labels, metric="cosine") if len(np.unique(labels)) > 1 else -1.0
        scores.append((k, float(sil)))
    curve = pl.DataFrame(scores, schema={"k": pl.Int64, "silhouette": pl.Float64}, orient="row")
    if settings.method == "hdbscan":
        return _hdbscan(sample, small, settings, curve)
    if settings.k == "auto":
        if curve.is_empty():
            raise GenembedError(f"clustering report: {len(small)} sampled windows are too few to choose k")
        k, sil = curve.sort("silhouette", "k", descending=[True, False]).row(0)
        how = f"k = {k}, chosen as the best silhouette (cosine) for k in 2-{curve['k'].max()}"
    else:
        k = min(int(settings.k), len(sample))
        row = curve.filter(pl.col("k") == k)
        sil = float(row["silhouette"][0]) if row.height else float("nan")
        how = f"k = {k}, as configured"
    assign = _kmeans(sample, k, settings.seed)
    description = (f"Spherical k-means (FAISS, 25 iterations, seed {settings.seed}) on {len(sample):,} sampled, "
                   f"L2-normalised embeddings: {how}; every window goes to its nearest centroid (cosine).")
    return Fit(assign, k, description, curve, sil)


def _kmeans(x: np.ndarray, k: int, seed: int) -> Assign:
    """Spherical k-means on ``x``; returns how to assign windows to its centroids."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False)
    km.train(np.ascontiguousarray(x, dtype=np.float32))

    def assign(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sim, idx = km.index.search(np.ascontiguousarray(v, dtype=np.float32), 1)
        return idx[:, 0], sim[:, 0]

    return assign


def umap_layout(x: np.ndarray, dims: int, min_dist: float, seed: int, neighbours: int = 15) -> np.ndarray:
    """UMAP (cosine) of unit vectors, over their exact nearest neighbours found with FAISS: the same
    graph UMAP's own approximate search aims at, without compiling that search on every run (two
    thirds of a report's time); 200 epochs, UMAP's own choice above 10,000 points (below it picks 500)."""
    import warnings

    import faiss
    import umap

    x = np.ascontiguousarray(x, dtype=np.float32)
    k = min(neighbours, len(x))
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, ids = index.search(x, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no NNDescent object kept: the reports never transform new data
        return umap.UMAP(n_components=dims, n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed,
                         n_jobs=1, n_epochs=200, precomputed_knn=(ids, np.maximum(1 - sims, 0), None)).fit_transform(x)


def _hdbscan(sample: np.ndarray, small: np.ndarray, settings: ClusterSettings, curve: pl.DataFrame) -> Fit:
    """HDBSCAN on a 10-D UMAP of the small sample; other windows take the cluster of their nearest
    sampled window (noise = -1), and their similarity to that cluster's mean direction."""
    import faiss
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import silhouette_score

    x = np.ascontiguousarray(sample[small], dtype=np.float32)
    size = settings.min_cluster_size or max(10, len(x) // 100)
    reduced = umap_layout(x, 10, 0.0, settings.seed)
    labels = HDBSCAN(min_cluster_size=size, copy=True).fit_predict(reduced)
    n = int(labels.max()) + 1
    if n == 0:
        raise GenembedError(f"clustering report: HDBSCAN found no cluster (min_cluster_size {size}); lower it or use k-means")
    centroids = normalise(np.stack([x[labels == c].mean(axis=0) for c in range(n)]))
    nearest = faiss.IndexFlatIP(x.shape[1])
    nearest.add(x)

    def assign(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, idx = nearest.search(np.ascontiguousarray(v, dtype=np.float32), 1)
        cluster = labels[idx[:, 0]]
        sim = np.where(cluster >= 0, np.einsum("ij,ij->i", v, centroids[np.maximum(cluster, 0)]), np.nan)
        return cluster, sim

    core = labels >= 0
    sil = float(silhouette_score(x[core], labels[core], metric="cosine")) if n > 1 else float("nan")
    description = (f"HDBSCAN (scikit-learn, min_cluster_size {size}) on a 10-D UMAP (cosine, 15 neighbours, min_dist 0, "
                   f"random_state {settings.seed}) of {len(x):,} sampled, L2-normalised embeddings: {n} clusters, "
                   f"{int((~core).sum()):,} sampled windows ({(~core).mean():.0%}) left as noise (cluster -1). "
                   f"Every other window takes the cluster of its nearest sampled window (cosine).")
    return Fit(assign, n, description, curve, sil)


def _top(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """The ``n`` windows most similar to their cluster's centroid, per cluster (noise has none)."""
    return (df.filter((pl.col("cluster") >= 0) & pl.col("similarity").is_not_nan())
            .sort("similarity", descending=True).group_by("cluster", maintain_order=True).head(n).select(df.columns))


def _summary(assignments: pl.LazyFrame) -> pl.DataFrame:
    """Per cluster: size, share, mean GC, and counts and fractions of each annotation class and genome."""
    sizes = assignments.group_by("cluster").agg(pl.len().alias("windows"), pl.col("gc_fraction").mean().alias("mean_gc"),
                                                pl.col("similarity").mean().alias("mean_similarity"))
    classes = (assignments.group_by("cluster", "annotation_class").agg(pl.len().alias("n")).collect()
               .pivot(on="annotation_class", index="cluster", values="n").fill_null(0))
    genomes = (assignments.group_by("cluster", "genome").agg(pl.len().alias("n")).collect()
               .pivot(on="genome", index="cluster", values="n").fill_null(0))
    annotated = any(c in classes.columns for c in CLASSES)
    classes = classes.with_columns(pl.lit(0, pl.UInt32).alias(c) for c in CLASSES if annotated and c not in classes.columns)
    class_cols = [c for c in (*CLASSES, "unannotated") if c in classes.columns]
    df = sizes.collect().join(classes, on="cluster").sort("cluster")
    df = df.with_columns((pl.col("windows") / pl.col("windows").sum()).alias("share"),
                         *[(pl.col(c) / pl.col("windows")).alias(f"frac_{c}") for c in class_cols])
    df = df.join(genomes.rename({c: f"genome_{c}" for c in genomes.columns if c != "cluster"}), on="cluster")
    return df.select("cluster", "windows", "share", "mean_gc", "mean_similarity", *class_cols,
                     *[f"frac_{c}" for c in class_cols], *[c for c in df.columns if c.startswith("genome_")])


def enrichment_table(assignments: pl.LazyFrame) -> pl.DataFrame:
    """Each cluster x annotation class over annotated windows: observed and expected counts,
    log2 fold enrichment (pseudocount 0.5) and the one-sided hypergeometric p-value of
    over-representation, Benjamini-Hochberg corrected over all tests (``q_value``)."""
    from scipy.stats import false_discovery_control, hypergeom

    counts = (assignments.filter(pl.col("annotation_class") != "unannotated")
              .group_by("cluster", "annotation_class").agg(pl.len().alias("observed")).collect())
    schema = {"cluster": pl.Int32, "class": pl.String, "cluster_windows": pl.Int64, "class_windows": pl.Int64,
              "observed": pl.Int64, "expected": pl.Float64, "log2_enrichment": pl.Float64,
              "p_value": pl.Float64, "q_value": pl.Float64}
    if counts.is_empty():
        return pl.DataFrame(schema=schema)
    clusters = counts.group_by("cluster").agg(pl.col("observed").sum().alias("cluster_windows"))
    classes = counts.group_by("annotation_class").agg(pl.col("observed").sum().alias("class_windows"))
    n_total = int(counts["observed"].sum())
    grid = (clusters.join(classes, how="cross").join(counts, on=["cluster", "annotation_class"], how="left")
            .with_columns(pl.col("observed").fill_null(0)).rename({"annotation_class": "class"}))
    obs, n_c, k_x = (grid[c].to_numpy().astype(np.int64) for c in ("observed", "cluster_windows", "class_windows"))
    expected = n_c * k_x / n_total
    p = hypergeom.sf(obs - 1, n_total, k_x, n_c)
    order = {c: i for i, c in enumerate(CLASSES)}
    return (grid.with_columns(pl.Series("expected", expected), pl.Series("log2_enrichment", np.log2((obs + 0.5) / (expected + 0.5))),
                              pl.Series("p_value", p), pl.Series("q_value", false_discovery_control(p)))
            .with_columns(pl.col("class").replace_strict(order, default=len(order)).alias("_order"))
            .sort("cluster", "_order").drop("_order").cast(schema).select(list(schema)))


def _figures(x: np.ndarray, meta: pl.DataFrame, summary: pl.DataFrame, enrichment: pl.DataFrame, fit: Fit,
             out: Path, settings: ClusterSettings) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = umap_layout(x, 2, 0.1, settings.seed)
    figs: dict[str, str] = {}

    def scatter(name: str, title: str, groups: np.ndarray, colors: dict | None = None) -> None:
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        values, sizes = np.unique(groups, return_counts=True)
        for v in values[np.argsort(-sizes, kind="stable")]:  # the largest group first, the rarer ones on top
            m = groups == v
            label = "noise" if name == "umap_cluster" and v == -1 else (f"cluster {v}" if name == "umap_cluster" else str(v))
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, label=label, c=(colors or {}).get(v))
        _axes(ax, title)
        ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        figs[name] = html.save_figure(fig, out / f"{name}.png")

    scatter("umap_cluster", "UMAP coloured by cluster", meta["cluster"].to_numpy())
    scatter("umap_genome", "UMAP coloured by genome", meta["genome"].to_numpy())
    scatter("umap_class", "UMAP coloured by annotation class", meta["annotation_class"].to_numpy(), CLASS_COLORS)

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=4, c=meta["gc_fraction"].to_numpy(), cmap="viridis")
    fig.colorbar(sc, ax=ax, label="GC fraction")
    _axes(ax, "UMAP coloured by GC fraction")
    figs["umap_gc"] = html.save_figure(fig, out / "umap_gc.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(summary.height)
    labels = summary["cluster"].cast(str).to_list()
    for c, color in CLASS_COLORS.items():
        if f"frac_{c}" in summary.columns:
            vals = summary[f"frac_{c}"].to_numpy()
            ax.bar(labels, vals, bottom=bottom, color=color, label=c)
            bottom += vals
    ax.set_xlabel("cluster")
    ax.set_ylabel("fraction of windows")
    ax.set_title("Annotation classes per cluster")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    figs["composition"] = html.save_figure(fig, out / "composition.png")

    figs["enrichment"] = _enrichment_figure(enrichment, out / "enrichment.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    if fit.silhouette.height:
        ax.plot(fit.silhouette["k"], fit.silhouette["silhouette"], marker="o", label="k-means")
    if settings.method == "kmeans":
        ax.axvline(fit.n_clusters, color="#d62728", linestyle="--", label=f"used: k = {fit.n_clusters}")
    else:
        ax.axhline(fit.chosen_silhouette, color="#d62728", linestyle="--", label=f"HDBSCAN ({fit.n_clusters} clusters, noise excluded)")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("mean silhouette (cosine)")
    ax.set_title("Cluster separation by k (sampled windows)")
    ax.legend(fontsize=8)
    figs["silhouette"] = html.save_figure(fig, out / "silhouette.png")
    return figs


def _enrichment_figure(enrichment: pl.DataFrame, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    if enrichment.is_empty():
        ax.text(0.5, 0.5, "no annotated genome: nothing to test", ha="center", va="center")
        ax.set_axis_off()
        return html.save_figure(fig, path)
    clusters = sorted(enrichment["cluster"].unique().to_list())
    classes = [c for c in CLASSES if c in set(enrichment["class"])]
    grid = np.zeros((len(classes), len(clusters)))
    q = np.ones_like(grid)
    for row in enrichment.iter_rows(named=True):
        i, j = classes.index(row["class"]), clusters.index(row["cluster"])
        grid[i, j], q[i, j] = row["log2_enrichment"], row["q_value"]
    lim = max(1.0, float(np.abs(grid).max()))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(clusters)):
            if q[i, j] < 0.05:
                ax.text(j, i, "*", ha="center", va="center", fontsize=12)
    ax.set_xticks(range(len(clusters)), [str(c) for c in clusters])
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("cluster")
    ax.set_ylabel("annotation class")
    ax.set_title("Enrichment (log2 observed/expected); * q < 0.05")
    fig.colorbar(im, ax=ax, label="log2 fold enrichment")
    return html.save_figure(fig, path)


def _axes(ax, title: str) -> None:
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title)


def _write_html(path: Path, summary: pl.DataFrame, enrichment: pl.DataFrame, exemplars: pl.DataFrame,
                figs: dict[str, str], fit: Fit, settings: ClusterSettings, total: int, small: int,
                genomes: list[GenomeInputs]) -> None:
    names = ", ".join(g.name for g in genomes)
    methods = (
        f"<p>{total:,} windows from {len(genomes)} genome(s) ({names}). {fit.description} "
        f"The silhouette curve uses {small:,} sampled windows; k-means fits for it were trained on up to "
        f"{SELECTION_SAMPLE:,}. The 2-D map is UMAP (cosine metric, 15 exact nearest neighbours from FAISS, min_dist 0.1, random_state "
        f"{settings.seed}) of the same {small:,} windows.</p>"
        f"<p>Each window's annotation class: <b>rRNA</b>, <b>tRNA</b> or <b>ncRNA</b> (in that order) when an RNA gene "
        f"covers at least min(50 bp, half the window); otherwise whichever covers most of it of <b>upstream</b> "
        f"(from {settings.upstream} bp upstream to {settings.downstream} bp downstream of a gene or transcript start, "
        f"strand-aware, or the promoter BED where one is given), <b>CDS</b>, <b>UTR/intron</b> (other bases of genes and "
        f"transcripts) and <b>intergenic</b>; <b>unannotated</b> = genome without annotation. Enrichment: for each "
        f"cluster and class over annotated windows, log2((observed + 0.5) / (expected + 0.5)) with expected = cluster "
        f"size x class share, and the one-sided hypergeometric p-value of over-representation, Benjamini-Hochberg "
        f"corrected over all {enrichment.height} tests (q). Negative log2 values mean depletion (not tested). "
        f"Exemplars are the {settings.exemplars} windows most similar (cosine) to each cluster's centroid.</p>"
        f"<p class='muted'>Settings: {asdict(settings)}</p>"
    )
    significant = enrichment.filter(pl.col("q_value") < 0.05).sort("log2_enrichment", descending=True)
    highlights = ("<p>Significant enrichments (q &lt; 0.05): " + ", ".join(
        f"cluster {r['cluster']}: {html.esc(r['class'])} ({2 ** r['log2_enrichment']:.1f}x)"
        for r in significant.head(12).iter_rows(named=True)) + ".</p>") if significant.height else \
        "<p class='note'>No cluster is significantly enriched for any annotation class (q &lt; 0.05).</p>"
    sortable = "<p class='muted'>Click a column header to sort.</p>"
    sections = [
        ("Summary", f"<p>{fit.n_clusters} clusters over {total:,} windows.</p>" + highlights),
        ("Clusters", sortable + html.table(summary)),
        ("Enrichment for annotation classes", html.grid(figs["enrichment"], figs["composition"]) + sortable
         + html.table(enrichment)),
        ("Exemplar windows", "<p class='muted'>Nearest each cluster's centroid; coordinates are 0-based, half-open "
         "(BED).</p>" + html.table(exemplars)),
        ("UMAP", html.grid(*(figs[k] for k in ("umap_cluster", "umap_genome", "umap_class", "umap_gc")))),
        ("Genomes", figs["genomes"]),
        ("Choice of k", figs["silhouette"]),
        ("Methods", methods),
    ]
    html.page("genembed clustering report", sections, path)
