"""The stranded part of the promoter report: the supervised model of :mod:`.supervised` trained on the
run's own transcription starts, scored on every bin of every genome on both strands, measured on the
report's held-out part against AT content, a 4-mer logistic regression and the window-level embedding
probe on the same examples, and written as ``+``/``-`` bigWigs and a narrowPeak of predicted promoters
(strand, peak = the predicted start, nearest downstream gene)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from genembed.data.annotation import _GENE_TYPES, TSS, Coverage, bed_starts, gene_starts, read_annotation, read_bed
from genembed.errors import GenembedError
from genembed.data.genome import Genome
from genembed.data.io import atomic_path
from genembed.data.layout import GenomeInputs
from genembed.data.windows import code_kmer_frequencies
from genembed.reports.browser import Locus, Track, igv_view
from genembed.reports.inputs import ReportContext
from genembed.reports.stats import block_bootstrap, interval, verdict
from genembed.reports.supervised import (STEP, CnnSettings, PromoterModel, bin_labels, n_bins, owned_bins, padded, span_piece,
                         strand_codes, to_strand)
from genembed.reports.tracks import write_bigwig

log = logging.getLogger(__name__)

MODEL = "supervised CNN"
NEAR = 60  # bp: a predicted start this close to a known one is right (the report's sentence)


def known_starts(genome: GenomeInputs, features: pl.DataFrame | None, contigs: dict[str, int],
                 operon_gap: int) -> pl.DataFrame | None:
    """Transcription starts (contig, tss, strand): from the promoter BED when the sheet gives one
    (:func:`genembed.data.annotation.bed_starts`), else the annotation's gene starts (operon heads with
    ``operon_gap``); None without either."""
    if genome.promoters is not None:
        return bed_starts(read_bed(genome.promoters, contigs))
    return None if features is None else gene_starts(features, operon_gap)


def gene_names(features: pl.DataFrame | None) -> pl.DataFrame:
    """Every gene's start (contig, tss, strand, name) for naming the gene downstream of a prediction."""
    if features is None:
        return pl.DataFrame(schema={"contig": pl.String, "tss": pl.Int64, "strand": pl.String, "name": pl.String})
    f = features.filter(pl.col("type").is_in(list(_GENE_TYPES)) & pl.col("strand").is_in(["+", "-"]))
    return f.select("contig", TSS.alias("tss"), "strand", pl.col("name").fill_null(".")).unique(
        ["contig", "tss", "strand"], maintain_order=True)


@dataclass
class _Part:
    """One contig read on one strand."""
    genome: str
    contig: str
    strand: str
    length: int
    codes: np.ndarray
    labels: np.ndarray | None  # per bin; None: the genome has no labels
    split: np.ndarray | None  # per bin: 1 test, 0 train, 2 validation, -1 straddles the held-out border
    coding: np.ndarray | None = None  # per bin: its base lies in a CDS (either strand); None: no annotation


@dataclass
class StrandedResult:
    metrics: pl.DataFrame
    comparison: pl.DataFrame
    counts: dict[str, int]
    threshold: float
    precision_target: float
    best_precision: float  # on validation examples, at recall >= 1%
    tss_recall: float
    tss_precision: float
    seconds: float
    examples: dict[str, int] = field(default_factory=dict)
    negatives: str = ""  # how the training negatives were drawn, in words
    view: str = ""  # the genome-browser view (igv.js) of the best calls and a few known starts


def coding_bins(cds: Coverage | None, contig: str, length: int, strand: str) -> np.ndarray | None:
    """Per bin of a contig read on ``strand``: whether the bin's base lies in a CDS (on either strand)."""
    if cds is None:
        return None
    pos = to_strand(np.arange(n_bins(length)) * STEP, length, strand)
    return cds.overlap(np.full(len(pos), contig, dtype=object), pos, pos + 1) > 0


def _cds(features: pl.DataFrame | None) -> Coverage | None:
    if features is None:
        return None
    cds = features.filter(pl.col("type") == "CDS").select("contig", "start", "end")
    return Coverage(cds) if cds.height else None


def negatives_said(coding: np.ndarray | None, labels: np.ndarray, share: float | None) -> str:
    """How the training negatives were drawn, for the report: the stated ratio and the genomes' own."""
    if coding is None or share is None:
        why = "" if share is None else " (a genome without CDS annotation)"
        return f"Negatives are drawn from all negative bins alike{why}."
    natural = float(coding[~labels].mean()) if (~labels).any() else 0.0
    return (f"Negatives are drawn {share:.0%} from coding bins (inside a CDS) and {1 - share:.0%} from the rest "
            f"(intergenic, UTR, intron); as the genomes come, {natural:.0%} of the negative bins are coding.")


def _split(length: int, strand: str, s: CnnSettings, test: tuple[int, int] | None) -> np.ndarray:
    """Per bin: where its example lies on the contig relative to the held-out interval ``test``;
    training examples in every tenth 10-kb block are kept for validation (calibration, threshold)."""
    b = np.arange(n_bins(length)) * STEP
    lo, hi = (b - s.before, b + s.after) if strand == "+" else (length - b - s.after, length - b + s.before)
    lo, hi = np.clip(lo, 0, length), np.clip(hi, 0, length)
    out = np.where((lo // 10_000) % 10 == 9, 2, 0).astype(np.int8)
    if test is not None:
        t0, t1 = test
        out[(hi > t0) & (lo < t1)] = -1
        out[(lo >= t0) & (hi <= t1)] = 1
    return out


@dataclass
class _Examples:
    """Every bin of the labeled parts as an example: offsets into one padded sequence, labels, split
    (see :func:`_split`), coding (or None)."""
    sequence: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    coding: np.ndarray | None


def _read_parts(genomes: list[GenomeInputs], tests: dict[str, dict[str, tuple[int, int]]], fastas: dict[str, Genome],
                operon_gap: int, settings: CnnSettings):
    """Every contig of every genome on each strand, labeled where its genome has starts; the starts
    and annotations read on the way."""
    parts: list[_Part] = []
    starts_of: dict[str, pl.DataFrame | None] = {}
    features = {g.name: read_annotation(g.annotation) if g.annotation is not None else None for g in genomes}
    for g in genomes:
        starts = starts_of[g.name] = known_starts(g, features[g.name], fastas[g.name].contigs, operon_gap)
        cds = _cds(features[g.name])
        for contig, length in fastas[g.name].contigs.items():
            seq = fastas[g.name].fetch(contig, 0, length)
            for strand in "+-":
                labels = split = coding = None
                if starts is not None:
                    tss = starts.filter((pl.col("contig") == contig) & (pl.col("strand") == strand))["tss"].to_numpy()
                    labels = bin_labels(to_strand(tss, length, strand), length, settings.reach)
                    split = _split(length, strand, settings, tests.get(g.name, {}).get(contig))
                    coding = coding_bins(cds, contig, length, strand)
                parts.append(_Part(g.name, contig, strand, length, strand_codes(seq, strand), labels, split, coding))
    labeled = [p for p in parts if p.labels is not None]
    if not labeled:
        raise GenembedError("promoter report: no genome has transcription starts for the supervised model")
    pads = [padded(p.codes, settings) for p in labeled]
    base = np.cumsum([0] + [len(x) for x in pads])[:-1]
    examples = _Examples(np.concatenate(pads),
                         np.concatenate([b + STEP * np.arange(n_bins(p.length)) for b, p in zip(base, labeled)]),
                         np.concatenate([p.labels for p in labeled]), np.concatenate([p.split for p in labeled]),
                         None if any(p.coding is None for p in labeled) else np.concatenate([p.coding for p in labeled]))
    if not all(examples.labels[examples.split == k].any() for k in (0, 1, 2)):
        raise GenembedError(f"{', '.join(str(g.promoters or g.annotation) for g in genomes if starts_of[g.name] is not None)}:"
                            " too few transcription starts for training, validation and held-out examples")
    return parts, labeled, examples, starts_of, features


@dataclass
class TrainedPromoters:
    """The stranded model as a run trained it: its network (None where only its record was read, as in
    the report), the Platt calibration of its logits, the calls' threshold (a probability) and how it
    was trained. Its record is JSON (:meth:`write`); the weights are a file of their own."""
    settings: CnnSettings
    slope: float
    intercept: float
    threshold: float
    precision: float  # the calls' precision target on validation examples
    best_precision: float  # what validation examples reach at recall >= 1%
    train_examples: int
    negatives: str
    seconds: float
    genomes: list[str]  # those it was trained on (the genomes with starts)
    held_out: dict[str, dict[str, list[int]]]  # per genome and contig, the held-out [lo, hi)
    weights_sha256: str = ""
    reason: str = ""  # why no model was trained (too few starts...); then there are no weights
    model: PromoterModel | None = None

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return (1 / (1 + np.exp(-(self.slope * np.asarray(logits, dtype=np.float64) + self.intercept)))).astype(np.float32)

    def write(self, weights: str | Path, record: str | Path) -> None:
        """The weights (:meth:`PromoterModel.save`), then this record naming their checksum."""
        import dataclasses
        import hashlib
        import json

        if self.model is not None:
            self.model.save(weights)
        else:  # not trained (see reason): an empty weights file
            with atomic_path(weights) as tmp:
                Path(tmp).write_bytes(b"")
        self.weights_sha256 = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        info = {k: v for k, v in dataclasses.asdict(self).items() if k != "model"}
        with atomic_path(record) as tmp:
            Path(tmp).write_text(json.dumps(info, indent=2) + "\n")

    @classmethod
    def read(cls, record: str | Path, weights: str | Path | None = None) -> "TrainedPromoters":
        """The record :meth:`write` wrote; with ``weights``, the network too (checked against the record)."""
        import hashlib
        import json

        try:
            info = json.loads(Path(record).read_text())
            info["settings"] = CnnSettings(**info["settings"])
            trained = cls(**info)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise GenembedError(f"{record}: not a promoter model record ({exc})") from None
        if weights is not None and not trained.reason:
            if hashlib.sha256(Path(weights).read_bytes()).hexdigest() != trained.weights_sha256:
                raise GenembedError(f"{weights}: not the weights {record} was written with")
            trained.model = PromoterModel.load(weights)
        return trained


def train_promoters(genomes: list[GenomeInputs], tests: dict[str, dict[str, tuple[int, int]]],
                    fastas: dict[str, Genome], operon_gap: int, precision: float,
                    settings: CnnSettings = CnnSettings(), device: str = "cpu", bf16: bool = False,
                    max_validation: int = 200_000) -> TrainedPromoters:
    """Train the network on the training bins of every labeled genome (both strands; the held-out
    ``tests`` and the border bins left out), calibrate it (Platt) on at most ``max_validation``
    validation examples and pick the calls' threshold there (``precision``)."""
    import time

    from sklearn.linear_model import LogisticRegression

    started = time.monotonic()
    _, _, ex, _, _ = _read_parts([g for g in genomes if g.name in tests], tests, fastas, operon_gap, settings)
    train = np.flatnonzero(ex.split == 0)
    log.info("stranded promoters: %d examples read in %.1f s", len(ex.labels), time.monotonic() - started)
    model = PromoterModel.fit(ex.sequence, ex.offsets[train], ex.labels[train], settings, device, bf16,
                              None if ex.coding is None else ex.coding[train])
    log.info("stranded promoters: trained in %.1f s", model.seconds)
    valid = np.flatnonzero(ex.split == 2)
    rng = np.random.default_rng(settings.seed)
    if len(valid) > max_validation:
        valid = np.sort(rng.choice(valid, max_validation, replace=False))
    logits = model.score(ex.sequence[ex.offsets[valid][:, None] + np.arange(settings.context)])
    platt = LogisticRegression().fit(logits[:, None], ex.labels[valid])
    trained = TrainedPromoters(settings, float(platt.coef_[0, 0]), float(platt.intercept_[0]), 0.0, precision, 0.0,
                               len(train), negatives_said(None if ex.coding is None else ex.coding[train], ex.labels[train],
                                                          settings.coding_share),
                               model.seconds, [g.name for g in genomes if g.name in tests], _plain(tests), model=model)
    trained.threshold, trained.best_precision = _threshold(ex.labels[valid], trained.probability(logits), precision)
    return trained


def _plain(tests: dict[str, dict[str, tuple[int, int]]]) -> dict[str, dict[str, list[int]]]:
    return {g: {c: [int(lo), int(hi)] for c, (lo, hi) in held.items()} for g, held in tests.items()}


def check_trained(trained: TrainedPromoters, genomes: list[GenomeInputs], tests: dict[str, dict[str, tuple[int, int]]],
                  settings: CnnSettings, record: str | Path) -> None:
    """Refuse a promoter model trained on other genomes, held-out parts or settings than the report's."""
    for what, mine, theirs in (("genomes", [g.name for g in genomes if g.name in tests], trained.genomes),
                               ("held-out parts", _plain(tests), trained.held_out), ("settings", settings, trained.settings)):
        if mine != theirs:
            raise GenembedError(f"{record}: the promoter model was trained with other {what} than this report's; rerun its"
                                " training job")


SCORE_SCHEMA = {"genome": pl.String, "contig": pl.String, "strand": pl.String, "bin": pl.Int64, "probability": pl.Float32}


def score_genome(trained: TrainedPromoters, genome: str, fasta: Genome,
                 spans: dict[str, tuple[int, int]] | None = None) -> pl.DataFrame:
    """The calibrated probability of every bin on each strand whose base lies in ``spans`` (contig ->
    ``[lo, hi)``; every contig whole when None), reading only those stretches of sequence: genome,
    contig, strand, bin (strand coordinates / STEP), probability."""
    frames = []
    for contig, length in fasta.contigs.items():
        if spans is not None and contig not in spans:
            continue
        span = (0, length) if spans is None else spans[contig]
        for strand in "+-":
            j0, j1 = owned_bins(length, strand, span)
            if j1 <= j0:
                continue
            piece = span_piece(lambda lo, hi: fasta.fetch(contig, lo, hi), length, strand, j0, j1, trained.settings)
            prob = trained.probability(trained.model.piece_track(piece, j1 - j0))
            frames.append(pl.DataFrame({"genome": genome, "contig": contig, "strand": strand,
                                        "bin": np.arange(j0, j1, dtype=np.int64), "probability": prob}, schema=SCORE_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=SCORE_SCHEMA)


def write_scores(scores: pl.DataFrame, trained: TrainedPromoters, path: str | Path) -> None:
    """Parquet, its metadata naming the model's weights (the report refuses scores of another model)."""
    with atomic_path(path) as tmp:
        scores.write_parquet(tmp, metadata={"promoter_model": trained.weights_sha256})


def read_scores(paths: list[Path], trained: TrainedPromoters) -> pl.DataFrame:
    """The score files of a run, each checked to come from ``trained``'s weights."""
    for path in paths:
        try:
            made_by = pl.read_parquet_metadata(path).get("promoter_model")
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise GenembedError(f"{path}: cannot read promoter scores ({exc})") from None
        if made_by != trained.weights_sha256:
            raise GenembedError(f"{path}: scored with another promoter model than the run's; rerun its scoring job")
    return pl.concat([pl.read_parquet(p) for p in paths]) if paths else pl.DataFrame(schema=SCORE_SCHEMA)


def _probabilities(parts: list[_Part], scores: pl.DataFrame) -> dict[int, np.ndarray]:
    """Each part's bins' probabilities from the score files; every bin exactly once, or an error."""
    grouped = scores.partition_by(["genome", "contig", "strand"], as_dict=True)
    out = {}
    for p in parts:
        rows = grouped.get((p.genome, p.contig, p.strand))
        prob = np.full(n_bins(p.length), np.nan, dtype=np.float32)
        if rows is not None:
            bins = rows["bin"].to_numpy()
            if len(bins) != len(np.unique(bins)) or bins.min() < 0 or bins.max() >= len(prob):
                raise GenembedError(f"promoter scores of {p.genome} {p.contig} ({p.strand}): bins repeated or outside the contig")
            prob[bins] = rows["probability"].to_numpy()
        if np.isnan(prob).any():
            raise GenembedError(f"promoter scores of {p.genome} {p.contig} ({p.strand}): {int(np.isnan(prob).sum())} of"
                                f" {len(prob)} bins missing (a scoring job's file is absent)")
        out[id(p)] = prob
    return out


MAX_TEST = 500_000  # held-out examples measured at most (whole bootstrap blocks, drawn at random)
MAX_BOOT = 200  # bootstrap resamples at most (each re-scores up to MAX_TEST examples per model)


def stranded_report(ctx: ReportContext, trained: TrainedPromoters, scores: pl.DataFrame,
                    window_scores: dict[str, pl.DataFrame]) -> StrandedResult:
    """Measure and write the stranded outputs (``{genome}.plus.bw``, ``{genome}.minus.bw``,
    ``{genome}.stranded.narrowPeak``) into ``ctx.out`` from ``trained``'s record and its ``scores`` of
    every bin (:func:`score_genome`, made where the genomes are scanned): no network runs here. The
    settings give the operon gap, the recall of the precision reported, the bootstrap (at most
    :data:`MAX_BOOT` resamples of ``block_bp`` blocks) and the seed. ``window_scores``: per genome the
    window-level embedding probe's track (contig, start, end, score), scored on the same held-out
    examples."""
    import time

    from sklearn.linear_model import LogisticRegression

    started = time.monotonic()
    genomes, tests, fastas, out = ctx.genomes, ctx.tests, ctx.fastas, ctx.out
    recall, block_bp, seed = ctx.settings.recall, ctx.settings.block_bp, ctx.settings.seed
    n_boot = min(ctx.settings.bootstrap, MAX_BOOT)
    settings = trained.settings
    parts, labeled, ex, starts_of, features = _read_parts(genomes, tests, fastas, ctx.settings.operon_gap, settings)
    prob = _probabilities(parts, scores)
    labeled_prob = np.concatenate([prob[id(p)] for p in labeled])

    # held-out examples: the model and the baselines on the same bins and strands
    positions = np.concatenate([to_strand(np.arange(n_bins(p.length)) * STEP, p.length, p.strand) for p in labeled])
    keys = np.concatenate([np.full(n_bins(p.length), f"{p.genome}\0{p.contig}", dtype=object) for p in labeled])
    test = np.flatnonzero(ex.split == 1)
    blocks = (keys[test] + "\0" + (positions[test] // block_bp).astype(str)).astype(str)
    rng = np.random.default_rng(seed)
    if len(test) > MAX_TEST:  # whole blocks at random, so the bootstrap still resamples blocks
        names, sizes = np.unique(blocks, return_counts=True)
        order = rng.permutation(len(names))
        kept = names[order[: max(1, int(np.searchsorted(np.cumsum(sizes[order]), MAX_TEST)))]]
        keep = np.isin(blocks, kept)
        test, blocks = test[keep], blocks[keep]
        log.info("stranded promoters: %d held-out examples measured, in %d whole blocks drawn at random", len(test), len(kept))
    train = np.flatnonzero(ex.split == 0)
    sample = rng.choice(train, min(len(train), 50_000), replace=False)
    window = np.arange(settings.context)
    kmer = LogisticRegression(max_iter=1000).fit(code_kmer_frequencies(ex.sequence[ex.offsets[sample][:, None] + window]),
                                                 ex.labels[sample])
    test_codes = ex.sequence[ex.offsets[test][:, None] + window]
    real = np.maximum((test_codes < 4).sum(1), 1)
    measured = {MODEL: labeled_prob[test],
                "4-mer LR": np.concatenate([kmer.predict_proba(code_kmer_frequencies(test_codes[i : i + 50_000]))[:, 1]
                                            for i in range(0, len(test), 50_000)]),
                "AT content": ((test_codes == 0) | (test_codes == 3)).sum(1) / real}
    if all(g in window_scores for g in {p.genome for p in labeled}):
        measured["embedding probe (windows, strand-blind)"] = _lookup(window_scores, labeled, positions)[test]
    log.info("stranded promoters: baselines at %.1f s", time.monotonic() - started)
    labels = ex.labels
    point, draws = block_bootstrap(labels[test], measured, blocks, recall, n_boot, seed)
    metrics = pl.DataFrame([{"model": name, **{m: vals[m] for m in ("roc_auc", "pr_auc", "precision_at_recall")},
                             **{f"{m}_{side}": interval(draws[f"{name}:{m}"])[i] for m in ("roc_auc", "pr_auc", "precision_at_recall")
                                for i, side in enumerate(("lo", "hi"))},
                             "test_examples": len(test), "test_positive_fraction": float(labels[test].mean()),
                             "train_examples": trained.train_examples} for name, vals in point.items()])
    comparison = pl.DataFrame([{"baseline": base, "metric": m, "difference": point[MODEL][m] - point[base][m],
                                "lo": (ci := interval(draws[f"{MODEL}:{m}"] - draws[f"{base}:{m}"]))[0], "hi": ci[1],
                                "supervised_is": verdict(*ci)}
                               for base in list(point)[1:] for m in ("roc_auc", "pr_auc", "precision_at_recall")])

    log.info("stranded promoters: bootstrap done at %.1f s", time.monotonic() - started)
    # tracks and calls
    counts, calls = {}, []
    bins = {id(p): _bins(p, prob[id(p)]) for p in parts}
    for g in genomes:
        mine = [p for p in parts if p.genome == g.name]
        for strand, name in (("+", "plus"), ("-", "minus")):
            track = pl.concat([bins[id(p)] for p in mine if p.strand == strand]).sort("contig", "start")
            write_bigwig(track, fastas[g.name].contigs, out / f"{g.name}.{name}.bw")
        peaks = pl.concat([_calls(p, prob[id(p)], trained.threshold, settings) for p in mine])
        peaks = _name_genes(peaks, gene_names(features[g.name]))
        counts[g.name] = _write_peaks(peaks, out / f"{g.name}.stranded.narrowPeak")
        calls.append(peaks.with_columns(pl.lit(g.name).alias("genome")))
    tss_recall, tss_precision = _tss_agreement(pl.concat(calls), starts_of, tests)
    view = _view(parts, bins, pl.concat(calls), starts_of, features, tests, fastas, seed)
    return StrandedResult(metrics, comparison, counts, trained.threshold, trained.precision, trained.best_precision,
                          tss_recall, tss_precision, time.monotonic() - started,
                          {"train": trained.train_examples, "test": len(test)}, trained.negatives, view)


def _threshold(truth: np.ndarray, prob: np.ndarray, precision: float) -> tuple[float, float]:
    """The lowest probability at which the validation examples' precision reaches ``precision``
    (infinity where it never does: no calls), and the best precision they reach at recall >= 1%."""
    from sklearn.metrics import precision_recall_curve

    p, r, t = precision_recall_curve(truth, prob)
    best = float(p[:-1][r[:-1] >= 0.01].max()) if (r[:-1] >= 0.01).any() else 0.0
    ok = np.flatnonzero(p[:-1] >= precision)
    if len(ok):
        return float(t[ok[0]]), best
    log.warning("stranded promoters: validation precision never reaches %.2f (best %.2f); no promoters called",
                precision, best)
    return float("inf"), best


def _lookup(window_scores: dict[str, pl.DataFrame], parts: list[_Part], positions: np.ndarray) -> np.ndarray:
    """The window-level track's value at each bin's position (0 where no window covers it)."""
    out, i = np.zeros(len(positions)), 0
    for p in parts:
        n = n_bins(p.length)
        track = window_scores[p.genome].filter(pl.col("contig") == p.contig).sort("start")
        starts, ends, vals = (track[c].to_numpy() for c in ("start", "end", "score"))
        at = np.searchsorted(starts, positions[i : i + n], side="right") - 1
        ok = (at >= 0) & (positions[i : i + n] < ends[np.maximum(at, 0)]) if len(starts) else np.zeros(n, bool)
        out[i : i + n] = np.where(ok, vals[np.maximum(at, 0)] if len(starts) else 0, 0)
        i += n
    return out


def _bins(p: _Part, prob: np.ndarray) -> pl.DataFrame:
    """A strand's values as contig intervals of STEP bp (on ``-`` a bin's interval ends at its base)."""
    pos = to_strand(np.arange(n_bins(p.length)) * STEP, p.length, p.strand)
    start = pos if p.strand == "+" else np.maximum(pos - STEP + 1, 0)
    end = np.minimum(pos + STEP, p.length) if p.strand == "+" else pos + 1
    return pl.DataFrame({"contig": p.contig, "start": start, "end": end, "score": prob.astype(np.float32)})


def _calls(p: _Part, prob: np.ndarray, threshold: float, s: CnnSettings) -> pl.DataFrame:
    """Runs of bins at or above ``threshold`` on one strand: region (the bins and the reach downstream
    of them, on the contig), predicted start (``reach / 2`` downstream of the best bin) and its probability."""
    hit = np.flatnonzero(prob >= threshold)
    schema = {"contig": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String, "tss": pl.Int64,
              "probability": pl.Float64}
    if len(hit) == 0:
        return pl.DataFrame(schema=schema)
    runs = np.split(hit, np.flatnonzero(np.diff(hit) > 1) + 1)
    rows = []
    for run in runs:
        best = run[np.argmax(prob[run])]
        a, b = run[0] * STEP, min(run[-1] * STEP + s.reach, p.length - 1)  # strand coordinates, inclusive
        tss = min(best * STEP + s.reach // 2, p.length - 1)
        lo, hi = sorted(to_strand(np.array([a, b]), p.length, p.strand))
        rows.append((p.contig, int(lo), int(hi) + 1, p.strand, int(to_strand(np.array([tss]), p.length, p.strand)[0]),
                     float(prob[best])))
    return pl.DataFrame(rows, schema=schema, orient="row")


def _name_genes(peaks: pl.DataFrame, genes: pl.DataFrame) -> pl.DataFrame:
    """The nearest gene starting at or downstream of each predicted start on its strand ('.' when none)."""
    names = []
    for (contig, strand), rows in peaks.group_by(["contig", "strand"], maintain_order=True):
        g = genes.filter((pl.col("contig") == contig) & (pl.col("strand") == strand))
        sign = 1 if strand == "+" else -1
        gs = np.sort(sign * g["tss"].to_numpy())
        order = np.argsort(sign * g["tss"].to_numpy())
        gn = g["name"].to_numpy()[order]
        i = np.searchsorted(gs, sign * rows["tss"].to_numpy() - NEAR)
        names.append(rows.with_columns(pl.Series("gene", np.where(i < len(gs), gn[np.minimum(i, max(len(gs) - 1, 0))], ".")
                                                 if len(gs) else np.full(rows.height, "."), dtype=pl.String)))
    return pl.concat(names).sort("contig", "start") if names else peaks.with_columns(pl.lit(".").alias("gene"))


def _write_peaks(peaks: pl.DataFrame, path: Path) -> int:
    """narrowPeak (BED6+4): name = the gene downstream, score = probability x 1000, signalValue = the
    probability, peak = the predicted start's offset from the region's start."""
    bed = peaks.select("contig", "start", "end", "gene", (pl.col("probability") * 1000).round().cast(pl.Int32).alias("score"),
                       "strand", pl.col("probability").round(4), pl.lit(-1).alias("p"), pl.lit(-1).alias("q"),
                       (pl.col("tss") - pl.col("start")).alias("peak"))
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write('track type=narrowPeak name="predicted promoters (stranded)" description="genembed supervised'
                     ' promoter model: name = nearest downstream gene, peak = predicted transcription start"\n')
            bed.write_csv(fh, separator="\t", include_header=False)
    return bed.height


def _tss_agreement(calls: pl.DataFrame, starts_of: dict[str, pl.DataFrame | None],
                   tests: dict[str, dict[str, tuple[int, int]]]) -> tuple[float, float]:
    """On the held-out part: the share of known starts with a predicted start within NEAR bp on the
    same strand (recall), and the share of predicted starts within NEAR bp of a known one (precision)."""
    found = known = right = called = 0
    for genome, held in tests.items():
        starts = starts_of.get(genome)
        if starts is None:
            continue
        for contig, (lo, hi) in held.items():
            for strand in "+-":
                k = np.sort(starts.filter((pl.col("contig") == contig) & (pl.col("strand") == strand)
                                          & pl.col("tss").is_between(lo, hi - 1))["tss"].to_numpy())
                c = np.sort(calls.filter((pl.col("genome") == genome) & (pl.col("contig") == contig)
                                         & (pl.col("strand") == strand) & pl.col("tss").is_between(lo, hi - 1))["tss"].to_numpy())
                known, called = known + len(k), called + len(c)
                found += int(_within(k, c).sum())
                right += int(_within(c, k).sum())
    return found / max(known, 1), right / max(called, 1)


def _within(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each of sorted ``a``: is some value of sorted ``b`` within NEAR?"""
    if len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1) if len(b) > 1 else np.zeros(len(a), dtype=np.int64)
    return np.minimum(np.abs(b[i] - a), np.abs(b[np.maximum(i - 1, 0)] - a)) <= NEAR


VIEW_CALLS, VIEW_KNOWN, VIEW_FLANK = 4, 3, 1000  # the browser view: best calls, known starts, bp each side


def _view(parts: list[_Part], bins: dict[int, pl.DataFrame], calls: pl.DataFrame,
          starts_of: dict[str, pl.DataFrame | None], features: dict[str, pl.DataFrame | None],
          tests: dict[str, dict[str, tuple[int, int]]], fastas: dict[str, Genome], seed: int) -> str:
    """igv.js at the best calls and at a few known starts of the held-out part: both strands' tracks,
    the calls, the genes and the known starts."""
    picks = [(r["genome"], r["contig"], r["tss"], f"call {r['genome']} {r['contig']}:{r['tss'] + 1:,} ({r['strand']},"
              f" {r['probability']:.2f}, {r['gene']})")
             for r in calls.sort("probability", descending=True).head(VIEW_CALLS).iter_rows(named=True)]
    known = [(g, c, int(t), f"known start {g} {c}:{int(t) + 1:,} ({s})")
             for g, held in tests.items() if starts_of.get(g) is not None for c, (lo, hi) in held.items()
             for t, s in starts_of[g].filter((pl.col("contig") == c) & pl.col("tss").is_between(lo, hi - 1))
             .select("tss", "strand").iter_rows()]
    rng = np.random.default_rng(seed)
    picks += [known[i] for i in sorted(rng.choice(len(known), min(VIEW_KNOWN, len(known)), replace=False))] if known else []
    loci = []
    for g, c, t, label in picks:
        n = fastas[g].contigs[c]
        a, b = max(0, t - VIEW_FLANK), min(n, t + VIEW_FLANK)
        loci.append(Locus(label, f"{g}\0{c}", a, b, fastas[g].fetch(c, a, b)))
    wanted = {lo.contig for lo in loci}
    tracks = {"+": Track("+ strand promoter probability", "wig", color="#1f77b4"),
              "-": Track("- strand promoter probability", "wig", color="#d62728")}
    for p in parts:
        key = f"{p.genome}\0{p.contig}"
        if key not in wanted:
            continue
        for lo in (x for x in loci if x.contig == key):
            near = bins[id(p)].filter((pl.col("end") > lo.start) & (pl.col("start") < lo.end))
            tracks[p.strand].rows += [(key, *r) for r in near.select("start", "end", "score").iter_rows()]
    called = Track("predicted promoters (name: gene downstream)", "bed", color="#2ca02c")
    called.rows = [(f"{r['genome']}\0{r['contig']}", r["start"], r["end"], r["gene"], int(r["probability"] * 1000), r["strand"])
                   for r in calls.iter_rows(named=True) if f"{r['genome']}\0{r['contig']}" in wanted]
    genes, starts = Track("genes", "bed", color="#555555"), Track("known starts", "bed", color="#9467bd")
    for name, f in features.items():
        if f is not None:
            f = f.filter(pl.col("type").is_in(list(_GENE_TYPES)))
            genes.rows += [(f"{name}\0{c}", a, b, n or ".", 0, s) for c, a, b, s, n in
                           f.select("contig", "start", "end", "strand", "name").iter_rows() if f"{name}\0{c}" in wanted]
        if starts_of.get(name) is not None:
            starts.rows += [(f"{name}\0{c}", t, t + 1, "start", 0, s) for c, t, s in
                            starts_of[name].select("contig", "tss", "strand").iter_rows() if f"{name}\0{c}" in wanted]
    return igv_view(loci, [tracks["+"], tracks["-"], called, genes, starts])
