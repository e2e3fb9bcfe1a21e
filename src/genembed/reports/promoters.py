"""Promoter-prediction report: labels from the annotation (or a BED of known promoters/TSSs), a
held-out part of each genome (whole contigs or a contiguous region, never random windows),
calibrated logistic regression on the embeddings beside k-mer and GC baselines on the same split,
metrics with block-bootstrap intervals, and genome-wide tracks (bedGraph, bigWig, BED)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.genome import Genome
from genembed.data.io import atomic_path, read_table, report_folder
from genembed.data.layout import GenomeInputs
from genembed.data.store import read_track
from genembed.data.windows import kmer_frequencies, window_sequences
from genembed.reports import html
from genembed.reports.inputs import ReportContext, genome_contigs, iter_labeled, make_labelers
from genembed.reports.stats import METRICS, Calibrated, block_bootstrap, fit_calibrated, interval, threshold_at_recall, verdict
from genembed.reports.tracks import score_bins, write_bedgraph, write_bigwig, write_predictions

if TYPE_CHECKING:
    from genembed.encode.plan import RunPlan, TrackSpec
    from genembed.encode.scan import Scanner
    from genembed.reports.stranded import TrainedPromoters
    from genembed.reports.supervised import CnnSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromoterSettings:
    upstream: int = 200
    downstream: int = 50
    test_fraction: float = 0.2
    split: str = "auto"  # auto | contigs | region
    kmer: int = 4
    max_train: int = 50_000
    recall: float = 0.5  # precision is reported at this recall; predicted promoters are called at it
    bootstrap: int = 1000  # block-bootstrap resamples for the confidence intervals
    block_bp: int = 10_000  # bootstrap block length
    labels: str = "centre"  # centre: the window's central stride bp overlap a promoter; overlap: any 1 bp of it
    operon_gap: int = 0  # > 0 (bacteria): only the first gene of same-strand runs with gaps up to this many bp has a promoter
    track_step: int = 0  # 0: one track value per stored window; below the stride: windows every step bp embedded
    max_n_fraction: float = 0.1  # track windows with more N are not scored (as the run skips them)
    stranded: bool = True  # also the supervised, stranded model (genembed.reports.stranded): +/- tracks, narrowPeak calls
    call_precision: float = 0.5  # the stranded calls' threshold: this precision on validation examples
    stranded_epochs: int = 2
    negative_coding_share: float | None = 0.5  # the stranded model's negatives: this share from coding bins; None: as they come
    seed: int = 0

    def __post_init__(self) -> None:
        if self.labels not in ("centre", "overlap"):
            raise GenembedError(f"promoters.labels must be 'centre' or 'overlap', not {self.labels!r}")
        if not 0 < self.call_precision < 1:
            raise GenembedError(f"promoters.call_precision must be between 0 and 1, not {self.call_precision}")
        if self.negative_coding_share is not None and not 0 <= self.negative_coding_share <= 1:
            raise GenembedError(f"promoters.negative_coding_share must be from 0 to 1 (or null), not {self.negative_coding_share}")
        if self.operon_gap < 0:
            raise GenembedError(f"promoters.operon_gap must be 0 (off) or a number of bp, not {self.operon_gap}")


def held_out(genome: GenomeInputs, settings: PromoterSettings) -> dict[str, tuple[int, int]]:
    """Held-out intervals per contig: whole contigs where no contig is larger than the held-out
    share (many chromosomes), otherwise the last ``test_fraction`` of each contig."""
    contigs = genome_contigs(genome.fasta)
    total = sum(contigs.values())
    target = settings.test_fraction * total
    mode = settings.split
    if mode == "auto":
        mode = "contigs" if len(contigs) >= 3 and max(contigs.values()) <= target else "region"
    if mode == "region":
        return {c: (int(n * (1 - settings.test_fraction)), n) for c, n in contigs.items()}
    if mode != "contigs":
        raise GenembedError(f"promoters.split must be auto, contigs or region, not {settings.split!r}")
    rng = np.random.default_rng(settings.seed)
    names = list(contigs)
    chosen: dict[str, tuple[int, int]] = {}
    acc = 0
    for i in rng.permutation(len(names)):  # whole contigs until the share is reached, never overshooting 2x
        if acc >= target or len(chosen) == len(names) - 1:
            break
        if acc + contigs[names[i]] <= 2 * target:
            chosen[names[i]] = (0, contigs[names[i]])
            acc += contigs[names[i]]
    if not chosen:
        raise GenembedError(f"{genome.name}: no contig fits the held-out share; use promoters.split: region")
    return chosen


def split_of(table: pl.DataFrame, test: dict[str, tuple[int, int]]) -> np.ndarray:
    """0 = train, 1 = test, -1 = straddles the border (dropped so no sequence is shared)."""
    contigs = table["contig"].to_numpy()
    starts, ends = table["start"].to_numpy(), table["end"].to_numpy()
    out = np.zeros(len(table), dtype=np.int8)
    for contig, (lo, hi) in test.items():
        rows = contigs == contig
        inside = rows & (starts >= lo) & (ends <= hi)
        out[rows & (ends > lo) & (starts < hi)] = -1
        out[inside] = 1
    return out


PROBE = "embeddings"  # the window-level probe on the pooled vectors, by its name in the tables
TRACK_SCHEMA = {"contig": pl.String, "start": pl.Int64, "end": pl.Int64, "score": pl.Float64}


@dataclass(frozen=True)
class StrandedInputs:
    """What the workflow's jobs made of the stranded model: its record (``promoter_model``) and the
    score files of every genome (``promoter_scores``, one per shard or pack)."""
    record: Path
    scores: list[Path]


def run_promoter_report(genomes: list[GenomeInputs], out_dir: str | Path, settings: PromoterSettings,
                        plan: "RunPlan", stranded_from: StrandedInputs | None = None) -> pl.DataFrame:
    """The promoter report of a run: its windows' size, stride and N limit, and, with a ``track_step``
    below the stride, a dense track: the track windows embedded with a genome's shards where it has
    them (``GenomeInputs.track``, made by a pack, or ``track_parts``, one per shard job), else a dense
    scan with the plan's model (refused
    when its files changed)."""
    from dataclasses import replace

    from genembed.encode.models import fingerprint

    w = plan.windows
    settings = replace(settings, max_n_fraction=w.max_n_fraction)
    scan, tracks = None, {}
    if (spec := plan.track(settings.track_step)) is not None:
        tracks = {g.name: t for g in genomes if (t := stored_track(g, spec))}
        if len(tracks) < len(genomes):  # some genome is scanned here
            if fingerprint(plan.folder) != plan.fingerprint:
                raise GenembedError(f"{plan.source}: not the model the shards were embedded with (its files changed);"
                                    " the dense promoter track needs that model (or promoters.track_step 0: one value"
                                    " per stored window)")
            from genembed.encode.scan import Scanner

            scan = Scanner.for_plan(plan)
    return promoter_report(genomes, out_dir, settings, w.stride, scan, w.size, tracks, stranded_from)


def train_promoter_model(genomes: list[GenomeInputs], settings: PromoterSettings, weights: str | Path,
                         record: str | Path) -> "TrainedPromoters":
    """The workflow's ``promoter_model`` job: the stranded model trained on the starts of the genomes
    that have them (the report's held-out parts left out), written as ``weights`` and a JSON
    ``record`` (calibration, threshold); where it cannot be trained (too few starts), a record that
    says why. Genomes without starts play no part: adding one does not retrain it."""
    from genembed.reports.stranded import TrainedPromoters, _plain

    genomes = [g for g in genomes if g.has_starts]
    tests = {g.name: held_out(g, settings) for g in genomes}
    fastas = {g.name: Genome(g.fasta) for g in genomes}
    try:
        trained = train_stranded(genomes, tests, fastas, settings)
    except GenembedError as exc:
        log.warning("%s", exc)
        trained = TrainedPromoters(cnn_settings(settings), 0.0, 0.0, float("inf"), settings.call_precision, 0.0, 0, "",
                                   0.0, [g.name for g in genomes], _plain(tests), reason=str(exc))
    finally:
        for f in fastas.values():
            f.close()
    trained.write(weights, record)
    return trained


def score_promoter_span(record: str | Path, weights: str | Path, fastas: dict[str, str | Path], out: str | Path,
                        plan: "RunPlan | None" = None, shard: str | None = None) -> int:
    """The workflow's ``promoter_scores`` job: the stranded model's probability of every bin of these
    genomes (a pack's), or, with ``plan`` and ``shard``, of the one genome's bins that shard owns (its
    track span, :func:`genembed.data.windows.shard_track_spans`; the first shard also owns contigs too short
    for a window), written to ``out`` (Parquet). Returns the number of bins scored."""
    from genembed.data.windows import shard_track_spans, windows_per_contig
    from genembed.reports.stranded import SCORE_SCHEMA, TrainedPromoters, score_genome, write_scores

    trained = TrainedPromoters.read(record, weights)
    frames = []
    for name, path in fastas.items():
        g = Genome(Path(path))
        try:
            spans = None
            if shard is not None:
                contigs = list(g.contigs.items())
                spec = plan.windows.spec(contigs)
                spans = shard_track_spans(contigs, spec, int(shard))
                if int(shard) == 0:
                    counts = windows_per_contig([n for _, n in contigs], spec)
                    spans.update({c: (0, n) for (c, n), k in zip(contigs, counts) if k == 0})
            if not trained.reason:
                frames.append(score_genome(trained, name, g, spans))
        finally:
            g.close()
    scores = pl.concat(frames) if frames else pl.DataFrame(schema=SCORE_SCHEMA)
    write_scores(scores, trained, out)
    log.info("promoter scores: %d bins of %s on both strands", scores.height, ", ".join(fastas))
    return scores.height


def stored_track(genome: GenomeInputs, spec: "TrackSpec") -> list[Path] | None:
    """A genome's track files (dense-track windows embedded with its shards: a pack's one file, else
    one part per shard), when they were made for this track (step, window size and N limit), from the
    same sequence, and agree with the genome's shards (model, tokenizer, pooling...); else None (the
    report scans the genome)."""
    import json

    from genembed.data.identity import QUERY_FIELDS, ShardIdentity
    from genembed.data.store import read_attrs, track_attrs

    if not genome.shards:
        return None
    if genome.track is not None and genome.track.is_file():
        files = [genome.track]
    elif len(genome.track_parts) == len(genome.shards):
        files = list(genome.track_parts)
    else:
        return None
    try:
        shard = read_attrs(genome.shards[0])
        contigs = genome_contigs(genome.fasta)
        for path in files:
            attrs = track_attrs(path)
            if json.loads(attrs.get("contig_lengths", "{}")) != contigs or \
                    ShardIdentity.from_attrs(attrs).diff(ShardIdentity.from_attrs(shard), QUERY_FIELDS) or \
                    spec.differs(attrs):
                log.info("%s: its track file %s was made otherwise (another sequence, step, model or window); scanning",
                         genome.name, path)
                return None
    except (GenembedError, ValueError) as exc:
        log.warning("%s: its track files cannot be used (%s); scanning", genome.name, exc)
        return None
    return files


def promoter_report(genomes: list[GenomeInputs], out_dir: str | Path, settings: PromoterSettings,
                    stride: int, scan: "Scanner | None" = None, window_size: int | None = None,
                    tracks: dict[str, list[Path]] | None = None, stranded_from: StrandedInputs | None = None
                    ) -> pl.DataFrame:
    """Write promoters.html, metrics.tsv, comparison.tsv, curve PNGs and per genome
    ``{genome}.bedgraph``, ``{genome}.bw`` and ``{genome}.promoters.bed`` to ``out_dir``.

    ``stride`` is the window stride. With ``scan`` (the run's model: sequence, window starts, window
    size -> embeddings; :meth:`genembed.encode.scan.Scanner.for_plan`) and a
    ``track_step`` below the stride, the tracks are a dense scan: windows of the run's size
    (``window_size``; default: read off the windows) every
    ``track_step`` bp are embedded and scored, each value on its central ``track_step`` bp; otherwise
    each stored window's score stands on its central ``stride`` bp. ``tracks``: per genome, a file of
    the dense track's windows already embedded (:func:`stored_track`), scored instead of a scan.
    ``stranded_from``: the stranded model's record and scores made by the workflow's jobs (else it is
    trained and run here)."""
    out = Path(out_dir)
    labelers = make_labelers(genomes, settings.upstream, settings.downstream,
                             stride if settings.labels == "centre" else None, settings.operon_gap)
    if not any(labelers.values()):
        raise GenembedError("promoter report: no genome has an annotation or a promoter BED (add one to the genome sheet)")
    with report_folder(out) as work:  # all of the report or none of it
        return _report(genomes, labelers, work, settings, stride, scan, window_size, tracks, stranded_from)


def _report(genomes: list[GenomeInputs], labelers: dict, out: Path, settings: PromoterSettings, stride: int,
            scan: "Scanner | None", window_size: int | None, tracks: dict[str, list[Path]] | None,
            stranded_from: StrandedInputs | None = None) -> pl.DataFrame:
    """:func:`promoter_report`'s work, into ``out`` (a folder of its own)."""
    tests = {g.name: held_out(g, settings) for g in genomes if labelers[g.name] is not None}
    fastas = {g.name: Genome(g.fasta) for g in genomes}
    ctx = ReportContext(genomes, tests, fastas, settings, out)
    try:
        models, y_train, n_train = _train(genomes, labelers, tests, fastas, settings)
        threshold = threshold_at_recall(y_train, models[PROBE].oof, settings.recall)
        tracks = tracks or {}
        dense = 0 < settings.track_step < stride and (scan is not None or bool(tracks))
        track_bins: dict[str, pl.DataFrame] = {}
        truth, scores, blocks, counts = _score(ctx, labelers, models, stride, threshold, scan if dense else None, window_size,
                                               tracks if dense else {}, track_bins)
        stranded = _stranded(ctx, track_bins, stranded_from) if settings.stranded else None
    finally:
        for f in fastas.values():
            f.close()
    point, draws = block_bootstrap(truth, scores, blocks, settings.recall, settings.bootstrap, settings.seed)
    metrics = _metrics_table(point, draws, truth, n_train, settings)
    comparison = _comparison_table(point, draws)
    with atomic_path(out / "metrics.tsv") as t:
        metrics.write_csv(t, separator="\t", float_precision=4)
    with atomic_path(out / "comparison.tsv") as t:
        comparison.write_csv(t, separator="\t", float_precision=4)
    figs = _curves(truth, scores, out)
    _write_html(ctx, metrics, comparison, figs, threshold, counts, len(np.unique(blocks)), len(draws[f"{PROBE}:roc_auc"]),
                settings.track_step if dense else None, stranded)
    return metrics


def _stranded(ctx: ReportContext, track_bins: dict[str, pl.DataFrame], stranded_from: "StrandedInputs | None"):
    """The supervised, stranded model's part of the report (:mod:`.stranded`), its tables written:
    from the model record and score files the workflow's jobs made (``stranded_from``; no network runs
    here), else trained and scored here."""
    from genembed.reports.stranded import TrainedPromoters, check_trained, read_scores, score_genome, stranded_report

    genomes, tests, fastas, settings, out = ctx.genomes, ctx.tests, ctx.fastas, ctx.settings, ctx.out
    if stranded_from is not None:  # a foreign or missing file is an error of the run, not a note
        trained = TrainedPromoters.read(stranded_from.record)
        check_trained(trained, genomes, tests, cnn_settings(settings), stranded_from.record)
        if trained.reason:  # too few starts, found by the training job
            log.warning("%s", trained.reason)
            return trained.reason
        scores = read_scores(stranded_from.scores, trained)
    else:
        try:
            trained = train_stranded(genomes, tests, fastas, settings)
        except GenembedError as exc:  # the window-level report stands without it
            log.warning("%s", exc)
            return str(exc)
        scores = pl.concat([score_genome(trained, g.name, fastas[g.name]) for g in genomes])
    result = stranded_report(ctx, trained, scores, track_bins)
    with atomic_path(out / "stranded.tsv") as t:
        result.metrics.write_csv(t, separator="\t", float_precision=4)
    with atomic_path(out / "stranded_comparison.tsv") as t:
        result.comparison.write_csv(t, separator="\t", float_precision=4)
    return result


def cnn_settings(settings: PromoterSettings) -> "CnnSettings":
    from genembed.reports.supervised import CnnSettings

    return CnnSettings(epochs=settings.stranded_epochs, seed=settings.seed, coding_share=settings.negative_coding_share)


def train_stranded(genomes: list[GenomeInputs], tests: dict[str, dict[str, tuple[int, int]]], fastas: dict[str, Genome],
                   settings: PromoterSettings) -> "TrainedPromoters":
    """The stranded model trained on the run's starts, on a GPU where there is one."""
    from genembed.encode.device import native_bf16, pick_device
    from genembed.reports.stranded import train_promoters

    device = pick_device("auto")
    return train_promoters(genomes, tests, fastas, settings.operon_gap, settings.call_precision, cnn_settings(settings),
                           device, native_bf16(device))


def _features(name: str, table: pl.DataFrame, emb: np.ndarray, fasta: Genome, settings: PromoterSettings) -> np.ndarray:
    if name == PROBE:
        return emb
    if name == "GC content":
        return table["gc_fraction"].fill_nan(0.5).fill_null(0.5).to_numpy().reshape(-1, 1)
    return kmer_frequencies(list(window_sequences(fasta, table)), settings.kmer)


def _model_names(settings: PromoterSettings) -> tuple[str, str, str]:
    return PROBE, f"{settings.kmer}-mer frequencies", "GC content"


def _train(genomes, labelers, tests, fastas, settings: PromoterSettings
           ) -> tuple[dict[str, Calibrated], np.ndarray, int]:
    """Calibrated classifiers per feature set on a sample of training windows (genome order kept),
    their labels, and how many training windows there were before sampling."""
    n_train = sum(int((split_of(read_table(w, ["contig", "start", "end"]), tests[g.name]) == 0).sum())
                  for g in genomes if labelers[g.name] is not None for w in g.windows)
    keep = min(1.0, settings.max_train / max(n_train, 1))
    rng = np.random.default_rng(settings.seed)
    names = _model_names(settings)
    x: dict[str, list[np.ndarray]] = {n: [] for n in names}
    y = []
    for g, table, emb in iter_labeled(genomes, labelers):
        if labelers[g.name] is None:
            continue
        pick = (split_of(table, tests[g.name]) == 0) & (rng.random(len(table)) < keep)
        if pick.any():
            rows = table.filter(pl.Series(pick))
            for n in names:
                x[n].append(_features(n, rows, emb[pick], fastas[g.name], settings))
            y.append(rows["promoter"].to_numpy())
    if not y:
        raise GenembedError("promoter report: no annotated window falls in the training part; check the annotation")
    y_train = np.concatenate(y).astype(np.int8)
    if len(np.unique(y_train)) < 2:
        raise GenembedError(f"{_label_files(genomes)}: the training windows are all of one class (too few promoters"
                            " for a training and a held-out part); check the annotation")
    models = {n: fit_calibrated(np.concatenate(x[n]), y_train, seed=settings.seed) for n in names}
    return models, y_train, n_train


def _score(ctx: ReportContext, labelers: dict, models: dict, stride: int, threshold: float,
           scan: "Scanner | None" = None, window_size: int | None = None, tracks: dict[str, list[Path]] | None = None,
           track_bins: dict[str, pl.DataFrame] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """Score every window with the embedding model (tracks for every genome) and the held-out
    windows with every model. Returns truth, scores, bootstrap blocks and predicted regions per genome."""
    genomes, tests, fastas, settings, out = ctx.genomes, ctx.tests, ctx.fastas, ctx.settings, ctx.out
    names = _model_names(settings)
    scores: dict[str, list[np.ndarray]] = {n: [] for n in names}
    truth, blocks = [], []
    counts: dict[str, int] = {}
    for g in genomes:
        per_genome = []
        for _, table, emb in iter_labeled([g], labelers):
            prob = models[PROBE].predict(emb)
            per_genome.append(table.select("contig", "start", "end").with_columns(pl.Series("score", prob)))
            if labelers[g.name] is None:
                continue
            test = split_of(table, tests[g.name]) == 1
            if test.any():
                rows = table.filter(pl.Series(test))
                scores[PROBE].append(prob[test])
                for n in names[1:]:
                    scores[n].append(models[n].predict(_features(n, rows, emb[test], fastas[g.name], settings)))
                truth.append(rows["promoter"].to_numpy())
                blocks.append((g.name + "\0" + rows["contig"] + "\0" + (rows["start"] // settings.block_bp).cast(pl.String)).to_numpy())
        windows = pl.concat(per_genome) if per_genome else pl.DataFrame(schema=TRACK_SCHEMA)
        title = f"{g.name} promoter probability"
        what = "genembed promoter probability (calibrated logistic regression on embeddings)"
        dense = None  # windows every track_step bp, scored: embedded by the pack (read one genome at a time) or scanned
        if tracks and g.name in tracks:  # scored one file at a time: only the scores are kept
            dense = pl.concat([t.with_columns(pl.Series("score", models[PROBE].predict(v)))
                               for t, v, _ in map(read_track, tracks[g.name])])
        elif scan is not None and (window_size or windows.height):
            size = window_size or int((windows["end"] - windows["start"]).max())
            dense = dense_scores(fastas[g.name], size, settings.track_step, scan, models[PROBE],
                                 settings.max_n_fraction)
        if dense is not None:
            bins = called = score_bins(dense, settings.track_step)  # predicted promoters at the track's resolution
        else:
            bins, called = score_bins(windows, stride), windows
        if track_bins is not None:
            track_bins[g.name] = bins
        write_bedgraph(bins, out / f"{g.name}.bedgraph", title, what)
        write_bigwig(bins, fastas[g.name].contigs, out / f"{g.name}.bw")
        counts[g.name] = write_predictions(called, threshold, out / f"{g.name}.promoters.bed",
                                           f"{g.name} predicted promoters",
                                           f"genembed: windows with promoter probability >= {threshold:.3f}")
    if not truth:
        raise GenembedError("promoter report: no window falls in the held-out part; lower the window size or raise test_fraction")
    y = np.concatenate(truth)
    if len(np.unique(y)) < 2:
        raise GenembedError(f"{_label_files(genomes)}: the held-out windows are all of one class (too few promoters"
                            " for a held-out part); add promoters or raise promoters.test_fraction")
    return y, {n: np.concatenate(s) for n, s in scores.items()}, np.concatenate(blocks), counts


def _label_files(genomes: list[GenomeInputs]) -> str:
    """The files the report's labels come from (promoter BEDs, else annotations), for an error."""
    return ", ".join(str(g.promoters or g.annotation) for g in genomes if g.promoters or g.annotation) \
        or "promoter report"


def dense_scores(fasta: Genome, size: int, step: int, scan: "Scanner", model: Calibrated,
                 max_n_fraction: float) -> pl.DataFrame:
    """Promoter probability of windows of ``size`` bp every ``step`` bp along every contig (a dense
    scan, :func:`genembed.encode.scan.scan_genome`): contig, start, end, score."""
    from genembed.encode.scan import scan_genome

    frames = [pl.DataFrame({"contig": contig, "start": starts, "end": starts + size, "score": model.predict(vectors)},
                           schema=TRACK_SCHEMA)
              for contig, starts, vectors, _ in scan_genome(scan, fasta, size, step, max_n_fraction) if len(starts)]
    return pl.concat(frames) if frames else pl.DataFrame(schema=TRACK_SCHEMA)


def _metrics_table(point, draws, truth: np.ndarray, n_train: int, settings: PromoterSettings) -> pl.DataFrame:
    rows = []
    for name, vals in point.items():
        row: dict = {"model": name}
        for m in METRICS:
            lo, hi = interval(draws[f"{name}:{m}"])
            row |= {m: vals[m], f"{m}_lo": lo, f"{m}_hi": hi}
        rows.append(row | {"recall_target": settings.recall, "test_windows": int(len(truth)),
                           "test_positive_fraction": float(truth.mean()), "train_windows": n_train})
    return pl.DataFrame(rows)


def _comparison_table(point, draws) -> pl.DataFrame:
    """Embeddings minus each baseline (paired bootstrap), and whether the difference is clear."""
    rows = []
    for base in list(point)[1:]:
        for m in ("roc_auc", "pr_auc", "precision_at_recall"):
            diff = draws[f"{PROBE}:{m}"] - draws[f"{base}:{m}"]
            lo, hi = interval(diff)
            rows.append({"baseline": base, "metric": m, "difference": point[PROBE][m] - point[base][m],
                         "lo": lo, "hi": hi, "embeddings_are": verdict(lo, hi)})
    return pl.DataFrame(rows)


def _curves(truth: np.ndarray, scores: dict[str, np.ndarray], out: Path) -> dict[str, str]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    def roc(s: np.ndarray):
        fpr, tpr, _ = roc_curve(truth, s)
        return fpr, tpr, {}

    def pr(s: np.ndarray):
        precision, recall, _ = precision_recall_curve(truth, s)
        return recall, precision, {}

    def calibration(s: np.ndarray):
        observed, predicted = calibration_curve(truth, s, n_bins=10, strategy="quantile")
        return predicted, observed, {"marker": "o"}

    p = float(truth.mean())
    plots = {
        "roc": (roc, "ROC", "false positive rate", "true positive rate", ([0, 1], [0, 1], "chance"), "lower right"),
        "pr": (pr, "Precision-recall", "recall", "precision", ([0, 1], [p, p], "positive fraction"), "upper right"),
        "calibration": (calibration, "Calibration", "predicted probability (mean per decile)",
                        "observed fraction of promoters", ([0, 1], [0, 1], "perfectly calibrated"), "upper left"),
    }
    return {name: _plot(out / f"{name}.png", {m: curve(s) for m, s in scores.items()}, *rest)
            for name, (curve, *rest) in plots.items()}


def _plot(path: Path, lines: dict, title: str, xlabel: str, ylabel: str, reference: tuple, legend: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, (x, y, style) in lines.items():
        ax.plot(x, y, label=label, **style)
    ax.plot(reference[0], reference[1], color="#999", linestyle="--", label=reference[2])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}, held-out windows")
    ax.legend(loc=legend, fontsize=8)
    return html.save_figure(fig, path)


def _verdicts(comparison: pl.DataFrame) -> str:
    """One plain sentence per baseline."""
    out = []
    for (base,), rows in comparison.group_by(["baseline"], maintain_order=True):
        main = rows.filter(pl.col("metric").is_in(["roc_auc", "pr_auc"]))
        parts = ", ".join(f"{'ROC-AUC' if r['metric'] == 'roc_auc' else 'PR-AUC'} {r['difference']:+.3f} "
                          f"(95% CI {r['lo']:+.3f} to {r['hi']:+.3f})" for r in main.iter_rows(named=True))
        verdicts = set(main["embeddings_are"])
        if verdicts == {"better"}:
            out.append(f"<p class='good'>The embeddings <b>beat</b> the {html.esc(base)} baseline: {parts}.</p>")
        elif "worse" in verdicts:
            out.append(f"<p class='note'>The embeddings do <b>not</b> beat the {html.esc(base)} baseline; they are "
                       f"<b>worse</b>: {parts}.</p>")
        else:
            out.append(f"<p class='note'>The embeddings do <b>not</b> beat the {html.esc(base)} baseline (no clear "
                       f"difference on held-out windows): {parts}.</p>")
    return "".join(out)


def _readable(metrics: pl.DataFrame, settings: PromoterSettings) -> pl.DataFrame:
    """One column per metric as 'estimate (low-high)'."""
    names = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "precision_at_recall": f"precision at recall {settings.recall:g}",
             "brier": "Brier score"}
    return metrics.select(
        "model",
        *[pl.format("{} ({}-{})", *(pl.col(c).round(3) for c in (m, f"{m}_lo", f"{m}_hi"))).alias(label)
          for m, label in names.items()],
        pl.col("test_windows").alias("test windows"), pl.col("test_positive_fraction").round(3).alias("positive fraction"),
        pl.col("train_windows").alias("training windows"))


def _stranded_html(r, settings: PromoterSettings, genomes: list[GenomeInputs]) -> str:
    """The supervised, stranded model's section: the sentence a biologist reads first, its table against
    the baselines on the same examples, and its files."""
    from genembed.reports.stranded import NEAR
    from genembed.reports.supervised import STEP, CnnSettings

    if isinstance(r, str):
        return f"<p class='note'>The supervised, stranded model was not trained: {html.esc(r)}.</p>"
    s = CnnSettings()
    table = r.metrics.select(
        "model", *[pl.format("{} ({}-{})", *(pl.col(c).round(3) for c in (m, f"{m}_lo", f"{m}_hi"))).alias(label)
                   for m, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"),
                                    ("precision_at_recall", f"precision at recall {settings.recall:g}"))],
        pl.col("test_examples").alias("test examples"), pl.col("test_positive_fraction").round(3).alias("positive fraction"))
    better = r.comparison.filter(pl.col("metric").is_in(["roc_auc", "pr_auc"])).group_by("baseline", maintain_order=True).agg(
        (pl.col("supervised_is") == "better").all().alias("beats"))
    beaten = [b for b, ok in better.iter_rows() if ok]
    files = "".join(f"<li><code>{html.esc(g.name)}.plus.bw</code>, <code>{html.esc(g.name)}.minus.bw</code>: the "
                    f"probability of a transcription start 0-{s.reach} bp downstream, every {STEP} bp on each strand; "
                    f"<code>{html.esc(g.name)}.stranded.narrowPeak</code>: {r.counts[g.name]:,} predicted promoters "
                    "(strand; name = the nearest gene downstream; peak = the predicted start)</li>" for g in genomes)
    called = (f"<p class='good'>At {r.tss_recall:.1%} recall of the held-out part's known transcription starts, "
              f"{r.tss_precision:.0%} of the predicted promoters there lie within {NEAR} bp of a known start "
              f"(on the same strand).</p>") if np.isfinite(r.threshold) else (
        f"<p class='note'>No promoter was called: the validation examples never reach precision {r.precision_target:g} "
        f"(the best is {r.best_precision:.2f}); lower <code>promoters.call_precision</code> for calls.</p>")
    return (
        called +
        f"<p>A small convolutional network reads the {s.context} bp around every {STEP}-bp bin on each strand and "
        f"predicts whether a transcription start lies 0-{s.reach} bp downstream (on that strand). It is trained on the "
        f"run's own starts ({'operon heads, gap ' + str(settings.operon_gap) + ' bp' if settings.operon_gap else 'every gene start'}"
        f", or the promoter BED) outside the held-out part above, calibrated (Platt) on every tenth 10-kb block of the "
        f"training part, in {r.seconds:.0f} s. {html.esc(r.negatives)} (<code>promoters.negative_coding_share</code>; "
        f"the held-out examples are every bin, as the genome has them.) It does not use the language model: it is the same for every model. "
        f"Baselines on the same held-out examples: AT content of the {s.context} bp, a 4-mer logistic regression on them, "
        f"and the embedding probe above (its window track at the bin, the same on both strands). "
        + (f"It beats {', '.join(html.esc(b) for b in beaten)} on ROC-AUC and PR-AUC (95% paired block bootstrap). "
           if beaten else "It does not clearly beat every baseline. ") + "</p>"
        + html.table(table)
        + html.table(r.comparison)
        + f"<p>Predicted promoters are runs of bins at or above probability {r.threshold:.3f}, the threshold at which "
          f"the validation examples reach precision {r.precision_target:g} (<code>promoters.call_precision</code>; lower it "
          f"for more, less certain calls).</p><ul>{files}</ul>"
        + "<h3>Genome browser</h3><p class='muted'>igv.js at the best calls and at a few known starts of the held-out "
          "part (2 kb each; the buttons move between them): both strands' probability, the calls, the genes and the "
          "known starts.</p>" + r.view)


def _write_html(ctx: ReportContext, metrics: pl.DataFrame, comparison: pl.DataFrame, figs: dict[str, str],
                threshold: float, counts: dict[str, int], n_blocks: int, n_boot: int, dense_step: int | None,
                stranded=None) -> None:
    """``promoters.html`` in the report's folder."""
    settings, tests, genomes, path = ctx.settings, ctx.tests, ctx.genomes, ctx.out / "promoters.html"
    held = "; ".join(f"{html.esc(g)}: " + ", ".join(f"{html.esc(c)}:{lo:,}-{hi:,}" for c, (lo, hi) in t.items())
                     for g, t in tests.items())
    sources = "; ".join(f"{html.esc(g.name)}: " + ("promoter BED " + html.esc(g.promoters.name) if g.promoters
                        else "annotation " + html.esc(g.annotation.name) if g.annotation else "none (scored only)")
                        for g in genomes)
    methods = (
        f"<p><b>Labels.</b> A window is <b>positive</b> when "
        f"{'its central stride bp (the bin its score stands for on the tracks) overlap' if settings.labels == 'centre' else 'it overlaps'}"
        f" a promoter region by at least 1 bp. Regions "
        f"come from a BED of known promoters or TSSs when one is given (1-bp intervals are TSSs and are widened as "
        f"below; longer intervals are used as they are), otherwise from the annotation: {settings.upstream} bp "
        f"upstream to {settings.downstream} bp downstream of every gene and transcript start (GFF3 or GTF, "
        f"strand-aware, pseudogenes left out). Sources: {sources}.</p>"
        f"<p><b>Split.</b> Held out (never seen in training; windows straddling its border are dropped): {held}.</p>"
        f"<p><b>Classifiers.</b> Three feature sets on the same windows: the embeddings, {settings.kmer}-mer "
        f"frequencies, and GC content alone. Each is a standardised logistic regression (scikit-learn, no class "
        f"weights) trained on up to {settings.max_train:,} training windows, its scores turned into probabilities by "
        f"Platt scaling fitted on 5-fold out-of-fold scores (folds are contiguous runs of windows).</p>"
        f"<p><b>Evaluation.</b> On held-out windows: ROC-AUC, PR-AUC (average precision), precision at recall "
        f"{settings.recall:g} and the Brier score. 95% intervals are percentile intervals of {n_boot:,} block-bootstrap "
        f"resamples ({n_blocks:,} blocks of {settings.block_bp:,} bp, seed {settings.seed}); the differences between "
        f"the embeddings and each baseline use the same (paired) resamples. The embeddings are said to beat a "
        f"baseline only when the intervals of both the ROC-AUC and the PR-AUC differences lie above zero.</p>"
        f"<p><b>Caveat.</b> The held-out part is unseen by the classifiers, but the language model itself may have "
        f"seen it in pretraining (the bundled demonstration model was trained on the whole E. coli genome), and "
        f"related genomes in the same run can share homologous sequence with it.</p>"
        f"<p class='muted'>Settings: {html.esc(asdict(settings))}</p>"
    )
    where = (f"a dense scan: windows of the run's size every {dense_step} bp embedded and scored, each value on its "
             f"central {dense_step} bp" if dense_step else "the promoter probability of every window on its central bin")
    tracks = "".join(
        f"<li><code>{html.esc(g.name)}.bw</code> / <code>{html.esc(g.name)}.bedgraph</code>: {where}; "
        f"<code>{html.esc(g.name)}.promoters.bed</code>: {counts[g.name]:,} predicted promoter regions</li>" for g in genomes)
    sections = [
        ("Result", _verdicts(comparison) + html.table(_readable(metrics, settings))
         + "<p class='muted'>Point estimate (95% block-bootstrap interval); higher is better except for the Brier "
           "score. All numbers are also in <code>metrics.tsv</code>.</p>"),
        ("Embeddings against the baselines", "<p class='muted'>Embeddings minus baseline; paired block bootstrap.</p>"
         + html.table(comparison)),
        ("Curves", html.grid(figs["roc"], figs["pr"], figs["calibration"])),
        *([("Stranded promoter model", _stranded_html(stranded, settings, genomes))] if stranded is not None else []),
        ("Tracks", f"<p>Load these in IGV or the UCSC browser (contigs sorted by name, sizes from the genome). "
         f"Predicted promoters are merged {'track bins' if dense_step else 'windows'} whose probability is at least {threshold:.3f}, the threshold that "
         f"reaches recall {settings.recall:g} on out-of-fold training predictions.</p><ul>{tracks}</ul>"),
        ("Methods", methods),
    ]
    html.page("genembed promoter-prediction report", sections, path)
