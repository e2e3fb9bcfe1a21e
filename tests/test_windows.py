import numpy as np
import polars as pl
import pytest

from genembed.errors import GenembedError
from genembed.data.genome import Genome, prepare_fasta
from genembed.data.windows import (WindowPlan, WindowSpec, genome_code, shard_count, shard_segments, shard_windows,
                              split_window_id, window_ids, window_sequences, windows_per_contig, write_shard_windows)


def test_windows_fit_inside_contigs_with_size_and_stride():
    spec = WindowSpec(size=100, stride=50)
    assert windows_per_contig([99, 100, 149, 150, 1000], spec).tolist() == [0, 1, 1, 2, 19]


def test_shards_cover_every_planned_window_exactly_once():
    spec = WindowSpec(size=100, stride=30, shard_size=7)
    contigs = [("a", 400), ("b", 90), ("c", 260)]
    n = shard_count(contigs, spec)
    seen = []
    for shard in range(n):
        segs = shard_segments(contigs, spec, shard)
        assert sum(len(s.starts) for s in segs) <= 7
        seen += [(s.contig, int(x)) for s in segs for x in s.starts]
    expected = [("a", x) for x in range(0, 301, 30)] + [("c", x) for x in range(0, 161, 30)]
    assert seen == expected
    assert n == -(-len(expected) // 7)
    with pytest.raises(GenembedError, match="out of range"):
        shard_segments(contigs, spec, n)


def test_window_ids_are_stable_unique_and_carry_the_genome():
    ords = np.arange(5)
    a, b = window_ids("ecoli", ords), window_ids("yeast", ords)
    assert np.array_equal(a, window_ids("ecoli", ords))
    assert len(set(a) | set(b)) == 10 and a.dtype == np.int64 and (a >= 0).all()
    codes, back = split_window_id(a)
    assert (codes == genome_code("ecoli")).all() and np.array_equal(back, ords)


def test_shard_table_has_coordinates_gc_and_n_fractions(tmp_path):
    seq = b"GGGGCCCCAA" * 10 + b"N" * 50 + b"acgt" * 25  # 250 bp, a soft-masked tail
    (tmp_path / "g.fa").write_bytes(b">chr1\n" + seq + b"\n")
    prepare_fasta(tmp_path / "g.fa", tmp_path / "g.fa.gz")
    genome = Genome(tmp_path / "g.fa.gz")
    spec = WindowSpec(size=100, stride=50, max_n_fraction=0.5, shard_size=10)
    table = shard_windows("toy", genome, spec, 0)
    assert table["start"].to_list() == [0, 50, 100, 150]  # 50-150 and 100-200 are 50% N: at the limit, kept
    assert table.columns == ["window_id", "genome", "contig", "start", "end", "gc_fraction", "n_fraction", "shard"]
    assert table.schema["window_id"] == pl.Int64
    row = table.row(0, named=True)
    assert row["gc_fraction"] == pytest.approx(0.8) and row["n_fraction"] == 0
    row = table.row(1, named=True)
    assert row["n_fraction"] == pytest.approx(0.5) and row["gc_fraction"] == pytest.approx(0.8)
    assert table.row(3, named=True)["gc_fraction"] == pytest.approx(0.5)  # lower-case counted as upper
    seqs = list(window_sequences(genome, table))
    assert seqs[3] == b"ACGT" * 25 and seqs[0] == b"GGGGCCCCAA" * 10
    strict = shard_windows("toy", genome, WindowSpec(100, 50, max_n_fraction=0.1, shard_size=10), 0)
    assert strict["start"].to_list() == [0, 150]


def test_window_stage_writes_parquet_atomically(tmp_path, prepared_slice):
    spec = WindowSpec(size=1000, stride=500, shard_size=100)
    out = tmp_path / "w" / "00001.parquet"
    n = write_shard_windows("ecoli", prepared_slice, spec, 1, out)
    table = pl.read_parquet(out)
    assert n == len(table) == 100
    assert table["start"][0] == 100 * 500 and (table["end"] - table["start"] == 1000).all()
    assert table["shard"].unique().to_list() == [1]
    assert [p.name for p in out.parent.iterdir()] == ["00001.parquet"]


def test_windows_whose_ambiguity_codes_overflow_the_model_are_dropped_not_fatal(tmp_path, tiny_bert):
    """A k-mer tokenizer reads each N as one token: at the longest window the model takes (what
    ``windows.size: auto`` picks), one N is already too many. Such windows are dropped at windowing,
    so tokenizing never fails on them."""
    from genembed.encode.models import ModelSpec, load_tokenizer, max_tokens
    from genembed.encode.tokenize import KmerTokenizer, token_fit, tokenize_shard

    hf = load_tokenizer(tiny_bert, ModelSpec(str(tiny_bert)))
    limit = max_tokens(tiny_bert, hf)
    tok = KmerTokenizer.from_hf(hf, 6, False)
    size = tok.max_bp(limit)
    rng = np.random.default_rng(0)
    windows = [bytearray(np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, size)].tobytes()) for _ in range(4)]
    windows[1][size // 2] = ord("N")  # one N in the middle: 5 more tokens than fit
    windows[3][:] = b"N" * (size // 20) + windows[3][size // 20 :]  # a 5% N run
    (tmp_path / "g.fa").write_bytes(b">chr1\n" + b"".join(windows) + b"\n")
    fasta = tmp_path / "g.fa.gz"
    prepare_fasta(tmp_path / "g.fa", fasta)
    spec = WindowSpec(size, size, max_n_fraction=0.1, shard_size=10)
    out = tmp_path / "w.parquet"
    for strands in ("forward", "average"):
        assert write_shard_windows("g", fasta, spec, 0, out, token_fit(tok, limit, strands)) == 2
        assert pl.read_parquet(out)["start"].to_list() == [0, 2 * size]
        assert tokenize_shard(out, fasta, tok, limit, tmp_path / "t.npy", tmp_path / "o.npy", strands) == 2
    write_shard_windows("g", fasta, spec, 0, out)  # without the test, tokenizing would refuse the shard
    with pytest.raises(GenembedError, match=f"tokens per window but the model takes at most {limit}"):
        tokenize_shard(out, fasta, tok, limit, tmp_path / "t.npy", tmp_path / "o.npy")


def test_shard_size_auto_keeps_a_genome_to_about_500_shards_of_at_least_2500_windows():
    cfg = {"size": 500, "stride": 250, "shard_size": "auto"}
    ecoli = [("chr", 4_641_652)]
    assert WindowPlan.from_config(cfg).spec(ecoli).shard_size == 2_500  # 18,565 windows: 8 shards
    human_like = [(f"chr{i}", 150_000_000) for i in range(20)]  # 12M windows
    spec = WindowPlan.from_config(cfg).spec(human_like)
    assert spec.shard_size == 25_000 and shard_count(human_like, spec) == 480
    with pytest.raises(GenembedError, match="shard_size auto is sized per genome"):
        WindowPlan.from_config(cfg).spec()
