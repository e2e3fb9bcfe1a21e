"""Clustering report: spherical k-means on the embeddings, UMAP of a sample, composition tables."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..index import normalise
from ..io import atomic_path
from . import html
from .data import GenomeInputs, iter_labeled, make_labelers

log = logging.getLogger(__name__)
CLASS_COLORS = {"upstream": "#d62728", "CDS": "#1f77b4", "intergenic": "#2ca02c", "unannotated": "#999999"}


@dataclass(frozen=True)
class ClusterSettings:
    k: int = 8
    kmeans_sample: int = 100_000
    umap_sample: int = 5_000
    upstream: int = 200
    downstream: int = 50
    seed: int = 0


def cluster_report(genomes: list[GenomeInputs], out_dir: str | Path, settings: ClusterSettings) -> pl.DataFrame:
    """Write clusters.html, clusters.tsv, assignments.parquet and PNG plots to ``out_dir``."""
    import faiss

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelers = make_labelers(genomes, settings.upstream, settings.downstream)
    total = sum(int(pl.scan_parquet(w).select(pl.len()).collect().item()) for g in genomes for w in g.windows)
    rng = np.random.default_rng(settings.seed)
    keep = min(1.0, settings.kmeans_sample / max(total, 1))
    vectors, meta = [], []
    for _, table, emb in iter_labeled(genomes, labelers):
        pick = rng.random(len(table)) < keep
        vectors.append(normalise(emb[pick]))
        meta.append(table.filter(pl.Series(pick)).select("genome", "gc_fraction", "annotation_class"))
    sample, sample_meta = np.concatenate(vectors), pl.concat(meta)
    k = max(1, min(settings.k, len(sample)))
    kmeans = faiss.Kmeans(sample.shape[1], k, niter=25, seed=settings.seed, spherical=True, verbose=False)
    kmeans.train(sample)

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        parts = []
        for i, (_, table, emb) in enumerate(iter_labeled(genomes, labelers)):
            _, assigned = kmeans.index.search(normalise(emb), 1)
            part = Path(tmp) / f"{i}.parquet"
            table.select("window_id", "genome", "contig", "start", "end", "gc_fraction", "annotation_class") \
                .with_columns(pl.Series("cluster", assigned[:, 0].astype(np.int32))).write_parquet(part)
            parts.append(part)
        assignments = pl.scan_parquet(parts)
        with atomic_path(out / "assignments.parquet") as t:
            assignments.sink_parquet(t)
    summary = _summary(pl.scan_parquet(out / "assignments.parquet"))
    with atomic_path(out / "clusters.tsv") as t:
        summary.write_csv(t, separator="\t", float_precision=4)

    _, sample_clusters = kmeans.index.search(sample, 1)
    sample_meta = sample_meta.with_columns(pl.Series("cluster", sample_clusters[:, 0]))
    figures = _figures(sample, sample_meta, summary, out, settings)
    _write_html(out / "clusters.html", summary, figures, settings, total, len(sample), k, genomes)
    return summary


def _summary(assignments: pl.LazyFrame) -> pl.DataFrame:
    """Per cluster: size, share, mean GC, and counts and fractions of each annotation class."""
    sizes = assignments.group_by("cluster").agg(pl.len().alias("windows"), pl.col("gc_fraction").mean().alias("mean_gc"))
    classes = (assignments.group_by("cluster", "annotation_class").agg(pl.len().alias("n")).collect()
               .pivot(on="annotation_class", index="cluster", values="n").fill_null(0))
    genomes = (assignments.group_by("cluster", "genome").agg(pl.len().alias("n")).collect()
               .pivot(on="genome", index="cluster", values="n").fill_null(0))
    annotated = ("upstream", "CDS", "intergenic")
    classes = classes.with_columns(pl.lit(0, pl.UInt32).alias(c) for c in annotated if c not in classes.columns)
    class_cols = [c for c in (*annotated, "unannotated") if c in classes.columns]
    df = sizes.collect().join(classes, on="cluster").sort("cluster")
    df = df.with_columns((pl.col("windows") / pl.col("windows").sum()).alias("share"),
                         *[(pl.col(c) / pl.col("windows")).alias(f"frac_{c}") for c in class_cols])
    if genomes.width > 2:
        df = df.join(genomes.rename({c: f"genome_{c}" for c in genomes.columns if c != "cluster"}), on="cluster")
    return df.select("cluster", "windows", "share", "mean_gc", *class_cols, *[f"frac_{c}" for c in class_cols],
                     *[c for c in df.columns if c.startswith("genome_")])


def _figures(sample: np.ndarray, meta: pl.DataFrame, summary: pl.DataFrame, out: Path,
             settings: ClusterSettings) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap

    rng = np.random.default_rng(settings.seed)
    pick = np.sort(rng.choice(len(sample), size=min(settings.umap_sample, len(sample)), replace=False))
    reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=settings.seed, n_jobs=1)
    xy = reducer.fit_transform(sample[pick])
    meta = meta[pick]
    figs: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    clusters = meta["cluster"].to_numpy()
    for c in np.unique(clusters):
        m = clusters == c
        ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, label=f"cluster {c}")
    _axes(ax, "UMAP coloured by k-means cluster")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    figs["umap_cluster"] = html.save_figure(fig, out / "umap_cluster.png")

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sc = ax.scatter(xy[:, 0], xy[:, 1], s=4, c=meta["gc_fraction"].to_numpy(), cmap="viridis")
    fig.colorbar(sc, ax=ax, label="GC fraction")
    _axes(ax, "UMAP coloured by GC fraction")
    figs["umap_gc"] = html.save_figure(fig, out / "umap_gc.png")

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    classes = meta["annotation_class"].to_numpy()
    by_size = sorted(CLASS_COLORS.items(), key=lambda kv: -int((classes == kv[0]).sum()))
    for c, color in by_size:  # the largest class first, so the rarer ones stay visible on top
        m = classes == c
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, c=color, label=c)
    _axes(ax, "UMAP coloured by annotation class")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    figs["umap_class"] = html.save_figure(fig, out / "umap_class.png")

    genomes = meta["genome"].to_numpy()
    if len(np.unique(genomes)) > 1:
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        for g in np.unique(genomes):
            m = genomes == g
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, label=g)
        _axes(ax, "UMAP coloured by genome")
        ax.legend(markerscale=3, fontsize=8, loc="best")
        figs["umap_genome"] = html.save_figure(fig, out / "umap_genome.png")

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
    return figs


def _axes(ax, title: str) -> None:
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title)


def _write_html(path: Path, summary: pl.DataFrame, figs: dict[str, str], settings: ClusterSettings,
                total: int, sampled: int, k: int, genomes: list[GenomeInputs]) -> None:
    names = ", ".join(g.name for g in genomes)
    methods = (
        f"<p>{total:,} windows from {len(genomes)} genome(s) ({names}). Embeddings were L2-normalised and "
        f"clustered by spherical k-means (FAISS, k = {k}, 25 iterations, seed {settings.seed}) trained on a "
        f"random sample of {sampled:,} windows; every window was then assigned to its nearest centroid. "
        f"The 2-D map is UMAP (cosine metric, 15 neighbours, min_dist 0.1, random_state {settings.seed}) of "
        f"{min(settings.umap_sample, sampled):,} sampled windows. Each window's annotation class is the one "
        f"covering most of it: <b>upstream</b> = the region from {settings.upstream} bp upstream to "
        f"{settings.downstream} bp downstream of a gene start (strand-aware), <b>CDS</b> = coding sequence, "
        f"<b>intergenic</b> = neither; <b>unannotated</b> = genome without annotation.</p>"
        f"<p class='muted'>Settings: {asdict(settings)}</p>"
    )
    sections = [
        ("Methods", methods),
        ("Clusters", "<p class='muted'>Click a column header to sort.</p>" + html.table(summary)),
        ("Cluster composition", figs["composition"]),
        ("UMAP", html.grid(*(figs[k] for k in ("umap_cluster", "umap_gc", "umap_class", "umap_genome") if k in figs))),
    ]
    html.page("genembed clustering report", sections, path)
