"""Dense scans (the promoter track's windows every few bp) equal embedding each window on its own."""

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from genembed.encode.embed import Embedder, embed_sequences
from genembed.encode.tokenize import plan_tokenizer
from genembed.encode.scan import Scanner


def _scanner_and_reference(plan):
    from genembed.encode.scan import Scanner

    embedder = Embedder.for_plan(plan)
    tokenizer = plan_tokenizer(plan, embedder.tokenizer)
    scan = Scanner(embedder, tokenizer, plan.max_tokens)
    return scan, lambda seqs: embed_sequences(embedder, tokenizer, seqs, plan.max_tokens)


def _gappy(ecoli_sequence: bytes, n: int = 30_000) -> bytes:
    block = bytearray(ecoli_sequence[:n])
    block[5_000:5_100] = b"N" * 100  # a gap, and an ambiguity code the vocabulary lacks ([UNK], never pooled)
    block[7_003] = ord("R")
    return bytes(block)


@pytest.mark.parametrize("embed", [{}, {"strands": "average"}, {"layer": -3}], ids=["last layer", "both strands",
                                                                                    "inner layer"])
def test_a_dense_scan_with_the_bundled_model_equals_embedding_each_window(ecoli_sequence, embed):
    """The bundled model's states are local (20 bp each side), so the scan runs it once along the sequence
    and again on window edges only; the vectors are those of each window embedded alone."""
    from helpers import default_plan

    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32", **embed))
    scan, reference = _scanner_and_reference(plan)
    assert scan.reach == 20  # the shared pass is taken
    block = _gappy(ecoli_sequence)
    starts = np.r_[np.arange(0, len(block) - 500 + 1, 100), 1, 29_500 - 7]  # the ends, and starts off the step
    got = scan(block, starts, 500)
    want = reference([block[s : s + 500] for s in starts])
    assert got.shape == want.shape == (len(starts), scan.embedder.hidden_size)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)  # float16 values: one unit in the last place
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.9999


def test_a_dense_scan_with_an_attention_model_embeds_each_window(ecoli_sequence, tiny_bert):
    """A BERT's states depend on the whole window: no shared pass, each window embedded alone."""
    from helpers import kmer_plan

    scan, reference = _scanner_and_reference(kmer_plan(tiny_bert, size=600, precision="fp32"))
    assert scan.reach is None
    block = ecoli_sequence[:5_000]
    starts = np.arange(0, 4_400, 300)
    np.testing.assert_array_equal(scan(block, starts, 600), reference([block[s : s + 600] for s in starts]))


def test_max_pooling_or_a_start_token_turns_the_shared_pass_off():
    from helpers import default_plan

    plan = default_plan()
    scan, _ = _scanner_and_reference(replace(plan, embed=replace(plan.embed, pooling="max")))
    assert scan.reach is None


def test_a_genome_embedded_in_one_pass_per_run_of_windows_equals_embedding_each_window(tmp_path, ecoli_sequence,
                                                                                         caplog):
    """A run's overlapping windows (500 bp every 250) with the bundled model: one pass along each run
    of windows (a gap of Ns and a second contig start new runs), the same vectors as window by window."""
    import gzip
    import logging

    import polars as pl

    from genembed.run.pipeline import embed_genome
    from genembed.data.store import read_shard
    from helpers import default_plan

    fasta = tmp_path / "g.fa.gz"
    seq = bytearray(ecoli_sequence[:30_000])
    seq[12_000:14_000] = b"N" * 2_000
    with gzip.open(fasta, "wb") as fh:
        fh.write(b">one\n" + bytes(seq) + b"\n>two\n" + ecoli_sequence[50_000:58_000] + b"\n")
    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32"), windows=replace(plan.windows, shard_size=40))
    with caplog.at_level(logging.INFO, logger="genembed.encode"):
        inputs = embed_genome(plan, fasta, "g", tmp_path / "out")[0]
    assert "one pass along the sequence" in caplog.text and len(inputs.shards) > 1
    table = pl.concat([pl.read_parquet(w) for w in inputs.windows])
    got = np.concatenate([read_shard(s).embeddings for s in inputs.shards]).astype(np.float32)
    seqs = {"one": bytes(seq), "two": ecoli_sequence[50_000:58_000]}
    _, reference = _scanner_and_reference(plan)
    want = reference([seqs[c][s : s + 500] for c, s in table.select("contig", "start").iter_rows()])
    assert table.filter(pl.col("contig") == "one")["start"].diff().max() > 250  # the gap split the run
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_tokens_that_are_not_one_per_base_are_embedded_window_by_window():
    """Overlapping windows whose tokens disagree on the shared bases (k-mers, a start token) cannot be
    stitched into one sequence: no shared pass."""
    from genembed.encode.scan import shard_vectors
    from helpers import default_plan

    embedder = Embedder.for_plan(default_plan())
    rng = np.random.default_rng(0)
    rows = [rng.integers(5, 9, 500) for _ in range(3)]
    assert shard_vectors(embedder, rows, np.array(["c"] * 3), np.array([0, 250, 500])) is None
    stitched = np.concatenate([rows[0], rng.integers(5, 9, 500)])
    rows = [stitched[s : s + 500] for s in (0, 250, 500)]
    assert shard_vectors(embedder, rows, np.array(["c"] * 3), np.array([0, 250, 500])).shape == (3, embedder.hidden_size)


def _gappy_fasta(path, ecoli_sequence):
    import gzip

    seq = bytearray(ecoli_sequence[:30_000])
    seq[12_000:14_000] = b"N" * 2_000
    seq[20_003] = ord("R")
    seqs = {"one": bytes(seq), "two": ecoli_sequence[50_000:58_070]}
    with gzip.open(path, "wb") as fh:
        fh.write(b"".join(b">" + c.encode() + b"\n" + s + b"\n" for c, s in seqs.items()))
    return seqs


def test_a_pack_embeds_the_promoter_tracks_windows_in_the_same_pass_as_its_own(tmp_path, ecoli_sequence):
    """With a track step, a pack embeds each genome's windows every 100 bp (those within the N limit,
    on every contig) beside its run windows, in one pass: both equal each window embedded alone."""
    import polars as pl

    from genembed.data.layout import TRACK
    from genembed.run.pipeline import embed_pack
    from genembed.data.store import read_shard, read_track
    from genembed.data.windows import encode
    from helpers import default_plan

    seqs = _gappy_fasta(tmp_path / "g.fa.gz", ecoli_sequence)
    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32"))
    embed_pack(plan, {"g": tmp_path / "g.fa.gz"}, tmp_path / "pack", track_step=100)
    _, reference = _scanner_and_reference(plan)

    table = pl.read_parquet(tmp_path / "pack/windows/g/00000.parquet")
    got = read_shard(tmp_path / "pack/embeddings/g/00000.h5").embeddings.astype(np.float32)
    want = reference([seqs[c][s : s + 500] for c, s in table.select("contig", "start").iter_rows()])
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)

    windows, vectors, attrs = read_track(tmp_path / f"pack/{TRACK.format(genome='g')}")
    expected = [(c, s) for c, seq in seqs.items() for s in range(0, len(seq) - 500 + 1, 100)
                if (encode(seq[s : s + 500]) == 4).mean() <= 0.1]
    assert list(windows.select("contig", "start").iter_rows()) == expected
    assert ("one", 12_000) not in expected and ("two", 7_500) in expected  # the gap is skipped; the last one is in
    assert (windows["end"] - windows["start"] == 500).all() and attrs["track_step"] == 100
    np.testing.assert_allclose(vectors, reference([seqs[c][s : s + 500] for c, s in expected]), rtol=2e-3, atol=2e-4)


def test_the_promoter_report_scores_a_packs_track_without_loading_the_model(tmp_path, ecoli_slice, monkeypatch):
    """The report scores the track windows the pack embedded (no model, no scan); its track equals the
    one a dense scan gives, value for value within float16 rounding."""
    from genembed.data.layout import group_shards, with_tracks
    from genembed.run.pipeline import embed_pack
    from genembed.reports.promoters import PromoterSettings, run_promoter_report
    from helpers import default_plan

    plan = default_plan()
    pack = tmp_path / "pack"
    embed_pack(plan, {"eco": ecoli_slice[0]}, pack, track_step=100)
    sheet = {"eco": {"annotation": str(ecoli_slice[1])}}
    settings = PromoterSettings(bootstrap=20, track_step=100)

    def genomes():
        return group_shards([pack / "embeddings/eco/00000.h5"], sheet)

    scanned = run_promoter_report(genomes(), tmp_path / "scanned", settings, plan)
    monkeypatch.setattr(Scanner, "for_plan", classmethod(lambda cls, *a, **k: pytest.fail("the model was loaded")))
    stored = run_promoter_report(with_tracks(genomes(), [pack]), tmp_path / "stored", settings, plan)

    def track(folder):
        lines = (tmp_path / folder / "eco.bedgraph").read_text().splitlines()[1:]
        return [f[:3] for f in map(str.split, lines)], np.array([float(f[3]) for f in map(str.split, lines)])

    (bins_a, a), (bins_b, b) = track("scanned"), track("stored")
    assert bins_a == bins_b and len(a) > 1_900  # 200 kb in 100-bp bins
    np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose(stored["roc_auc"].to_numpy(), scanned["roc_auc"].to_numpy())
    assert "dense scan" in (tmp_path / "stored/promoters.html").read_text()


def test_a_track_made_otherwise_is_not_used(tmp_path, ecoli_sequence):
    """A track file of another step is ignored (the report scans instead of mixing resolutions)."""
    from genembed.data.layout import group_shards, with_tracks
    from genembed.run.pipeline import embed_pack
    from genembed.encode.plan import TrackSpec
    from genembed.reports.promoters import stored_track
    from helpers import default_plan

    _gappy_fasta(tmp_path / "g.fa.gz", ecoli_sequence)
    embed_pack(default_plan(), {"g": tmp_path / "g.fa.gz"}, tmp_path / "pack", track_step=200)
    g = with_tracks(group_shards([tmp_path / "pack/embeddings/g/00000.h5"]), [tmp_path / "pack"])[0]
    assert g.track is not None and default_plan().track(200) == TrackSpec(200, 500, 0.1)
    assert default_plan().track(250) is None and default_plan().track(0) is None  # not below the stride: no track
    assert stored_track(g, TrackSpec(200, 500, 0.1)) is not None
    assert stored_track(g, TrackSpec(100, 500, 0.1)) is None and stored_track(g, TrackSpec(200, 600, 0.1)) is None
    (tmp_path / "other.fa").write_bytes(b">one\n" + ecoli_sequence[:29_000] + b"\n")  # another sequence, same name
    embed_pack(default_plan(), {"g": tmp_path / "other.fa"}, tmp_path / "other")
    g.fasta = tmp_path / "other/genomes/g/genome.fa.gz"
    assert stored_track(g, TrackSpec(200, 500, 0.1)) is None
    g.track.write_bytes(b"cut short")
    assert stored_track(with_tracks(group_shards([tmp_path / "pack/embeddings/g/00000.h5"]), [tmp_path / "pack"])[0],
                        TrackSpec(200, 500, 0.1)) is None  # unreadable: scanned instead


def test_a_genome_whose_track_windows_are_all_filtered_gets_an_empty_track(tmp_path, ecoli_sequence):
    """Every track window over the N limit, one run window under it: the pack still writes both."""
    from genembed.run.pipeline import embed_pack
    from genembed.data.store import read_shard, read_track
    from helpers import default_plan

    seq = bytearray(ecoli_sequence[:750])
    seq[240] = ord("N")  # in the track's windows at 0, 100 and 200 and the run's at 0, not the run's at 250
    (tmp_path / "g.fa").write_bytes(b">c\n" + bytes(seq) + b"\n")
    plan = default_plan()
    plan = replace(plan, windows=replace(plan.windows, max_n_fraction=0.0))
    embed_pack(plan, {"g": tmp_path / "g.fa"}, tmp_path / "pack", track_step=100)
    assert len(read_shard(tmp_path / "pack/embeddings/g/00000.h5").window_id) == 1
    windows, vectors, _ = read_track(tmp_path / "pack/embeddings/g/track.h5")
    assert windows.height == 0 and vectors.shape == (0, Embedder.for_plan(plan).hidden_size)


def test_a_pack_out_of_memory_in_the_shared_pass_embeds_window_by_window_without_a_track(tmp_path, ecoli_sequence,
                                                                                            monkeypatch, caplog):
    """A GPU out-of-memory error in the pass along the sequence (injected: no GPU here) does not fail
    the pack: its windows are embedded one by one (which backs off), and no track is written, so the
    promoter report scans that genome."""
    import logging

    import polars as pl
    import torch

    import genembed.encode.scan
    from genembed.run.pipeline import embed_pack
    from genembed.data.store import read_shard
    from helpers import default_plan

    seqs = _gappy_fasta(tmp_path / "g.fa.gz", ecoli_sequence)
    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32"))

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(genembed.encode.scan, "window_means", no_memory)
    with caplog.at_level(logging.WARNING, logger="genembed"):
        embed_pack(plan, {"g": tmp_path / "g.fa.gz"}, tmp_path / "pack", track_step=100)
    assert "out of memory in the pass along the sequence" in caplog.text
    assert not (tmp_path / "pack/embeddings/g/track.h5").exists()
    table = pl.read_parquet(tmp_path / "pack/windows/g/00000.parquet")
    _, reference = _scanner_and_reference(plan)
    want = reference([seqs[c][s : s + 500] for c, s in table.select("contig", "start").iter_rows()])
    np.testing.assert_allclose(read_shard(tmp_path / "pack/embeddings/g/00000.h5").embeddings.astype(np.float32), want,
                               rtol=2e-3, atol=2e-4)


def test_a_shards_track_span_runs_from_its_first_window_to_the_next_shards_so_the_shards_tile_the_genome():
    from genembed.data.windows import WindowSpec, shard_count, shard_track_spans

    contigs = [("a", 2_600), ("b", 400), ("c", 1_900), ("d", 750)]  # b is shorter than a window: no track
    spec = WindowSpec(500, 250, 0.1, 4)  # a: 9 windows (0 .. 2,000), c: 6, d: 2
    owners: dict[tuple[str, int], list[int]] = {}
    for shard in range(shard_count(contigs, spec)):
        for contig, (lo, hi) in shard_track_spans(contigs, spec, shard).items():
            for t in range(0, dict(contigs)[contig] - 500 + 1, 100):
                if lo <= t < hi:
                    owners.setdefault((contig, t), []).append(shard)
    every = {(c, t) for c, n in contigs for t in range(0, n - 500 + 1, 100)}
    assert set(owners) == every and all(len(s) == 1 for s in owners.values())  # each track window made once
    assert shard_track_spans(contigs, spec, 0) == {"a": (0, 1_000)}  # windows 0 .. 750; the next shard's first at 1,000
    assert shard_track_spans(contigs, spec, 2) == {"a": (2_000, 2_600), "c": (0, 750)}  # a's last window: to a's end


def test_a_sharded_genomes_track_is_made_by_its_shard_jobs_and_the_report_loads_no_model(tmp_path, ecoli_slice,
                                                                                          monkeypatch):
    """Each shard job embeds the track windows of its own span, and scores the bins of that span with
    the stranded promoter model; together they are the whole genome's tracks, and the report uses them
    without loading, training or running any model (issue 29)."""
    from genembed.data.genome import Genome
    from genembed.data.layout import TRACK_PART, group_shards
    from genembed.run.pipeline import embed_genome, embed_shard_track
    from genembed.errors import GenembedError
    from genembed.reports.promoters import (PromoterSettings, StrandedInputs, run_promoter_report, score_promoter_span,
                                            train_promoter_model)
    from genembed.reports.stranded import score_genome
    from genembed.reports.supervised import PromoterModel
    from genembed.encode.scan import scan_with_track
    from genembed.data.store import read_track
    from helpers import default_plan

    plan = default_plan()
    plan = replace(plan, windows=replace(plan.windows, shard_size=300))
    root = tmp_path / "results"
    genome = embed_genome(plan, ecoli_slice[0], "eco", root)[0]
    assert len(genome.shards) == 3
    embedder = Embedder.for_plan(plan)
    parts = [root / TRACK_PART.format(genome="eco", shard=s.stem) for s in genome.shards]
    for shard, part in zip(genome.shards, parts):
        embed_shard_track(plan, embedder, genome.fasta, shard.stem, 100, part)
    got = [read_track(p) for p in parts]
    fasta = Genome(genome.fasta)
    none = np.zeros(0, dtype=np.int64)
    _, windows, whole = scan_with_track(Scanner.for_plan(plan), fasta, none.astype(str), none, 500, 100, 0.1)
    fasta.close()
    assert pl.concat([w for w, _, _ in got]).equals(windows) and all(len(w) for w, _, _ in got)
    np.testing.assert_allclose(np.concatenate([v for _, v, _ in got]), whole.astype(np.float32), rtol=2e-3, atol=2e-4)

    found = group_shards(genome.shards, {"eco": {"annotation": str(ecoli_slice[1])}})
    assert found[0].track_parts == parts

    # the stranded model: trained once, scored by a job per shard (each the bins of its own span)
    settings = PromoterSettings(bootstrap=20, track_step=100, stranded_epochs=1)
    record, weights = tmp_path / "promoters/model.json", tmp_path / "promoters/model.pt"
    trained = train_promoter_model(found, settings, weights, record)
    scores = [tmp_path / f"promoters/{s.stem}.parquet" for s in genome.shards]
    for shard, out in zip(genome.shards, scores):
        score_promoter_span(record, weights, {"eco": genome.fasta}, out, plan, shard.stem)
    fasta = Genome(genome.fasta)
    whole_genome = score_genome(trained, "eco", fasta).sort("strand", "bin")
    fasta.close()
    by_shards = pl.concat([pl.read_parquet(p) for p in scores])
    assert all(pl.read_parquet(p).height for p in scores)
    assert by_shards.select("strand", "bin").is_unique().all()  # every bin of each strand once
    by_shards = by_shards.sort("strand", "bin")
    assert by_shards.select("genome", "contig", "strand", "bin").equals(whole_genome.select("genome", "contig", "strand", "bin"))
    np.testing.assert_allclose(by_shards["probability"], whole_genome["probability"], atol=1e-5)

    monkeypatch.setattr(Scanner, "for_plan", classmethod(lambda cls, *a, **k: pytest.fail("the model was loaded")))
    monkeypatch.setattr(PromoterModel, "load", lambda *a: pytest.fail("the promoter model was loaded"))
    monkeypatch.setattr(PromoterModel, "fit", lambda *a, **k: pytest.fail("a promoter model was trained"))
    run_promoter_report(found, tmp_path / "report", settings, plan, StrandedInputs(record, scores))
    assert "dense scan" in (tmp_path / "report/promoters.html").read_text()
    assert (tmp_path / "report/eco.plus.bw").is_file() and (tmp_path / "report/stranded.tsv").is_file()
    with pytest.raises(GenembedError, match=r"bins missing \(a scoring job's file is absent\)"):
        run_promoter_report(found, tmp_path / "report2", settings, plan, StrandedInputs(record, scores[1:]))
    record.write_text(record.read_text().replace(trained.weights_sha256, "0" * 64))
    with pytest.raises(GenembedError, match="00000.parquet: scored with another promoter model"):
        run_promoter_report(found, tmp_path / "report3", settings, plan, StrandedInputs(record, scores))
    assert not (tmp_path / "report3").exists()
