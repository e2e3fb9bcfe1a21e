"""Small genomes are embedded together, one job per pack (windows.pack_bp), instead of a prepare,
windows, tokenize and embed job per shard; the files land where the sharded layout puts them."""

import json

import h5py
import numpy as np
import polars as pl
import pytest

from helpers import DEFAULT_MODEL, REPO, dry_run_jobs, slice_fasta, snakemake, write_config

pytestmark = pytest.mark.workflow

CONFIG = dict(model={"path": str(DEFAULT_MODEL)}, embed={"precision": "fp32"}, evaluate={"enabled": False},
              clusters={"k": 3, "umap_sample": 150}, promoters={"track_step": 100})  # a dense track: from the packs
# plain FASTAs of 60 kb (61 kB on disk): a and b share a pack of at most 150 kb, c starts the next
SLICES = {"a": ("chrA", 0), "b": ("chrB", 300_000), "c": ("chrC", 600_000), "d": ("chrD", 900_000)}


def sheet(d, genomes):
    """Plain FASTA slices; genome a has the E. coli annotation of its 60 kb (a promoter report runs)."""
    return "genome\tfasta\tannotation\n" + "".join(
        f"{g}\t{slice_fasta(d / f'{g}.fa', SLICES[g][0], SLICES[g][1], 60_000)}\t{annotation(d) if g == 'a' else ''}\n"
        for g in genomes)


def annotation(d):
    import gzip

    gff = d / "a.gff"
    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.gff.gz", "rt") as src:
        rows = [f for f in (line.rstrip("\n").split("\t") for line in src if not line.startswith("#"))
                if len(f) == 9 and f[2] != "region" and int(f[4]) <= 60_000]
    gff.write_text("##gff-version 3\n" + "".join("\t".join(["chrA", *f[1:]]) + "\n" for f in rows))
    return gff


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("packed")
    write_config(d, sheet(d, "abc"), windows={"size": 500, "stride": 250, "pack_bp": 150_000}, **CONFIG)
    res = snakemake(d, "--cores", "2")
    (d / "run.out").write_text(res.stdout + res.stderr)
    return d


def test_small_genomes_are_embedded_one_job_per_pack(packed):
    logs = packed / "benchmarks/logs"
    assert sorted(p.stem for p in (logs / "embed_pack").glob("*.tsv")) == ["a", "c"]
    assert not any((logs / rule).exists() for rule in ("prepare_genome", "windows", "tokenize", "embed"))
    assert json.loads((packed / "results/packs/a/pack.json").read_text())["genomes"] == ["a", "b"]
    r = packed / "results"
    total = 0
    for g in "abc":
        ids = pl.read_parquet(r / f"windows/{g}/00000.parquet")["window_id"].to_numpy()
        with h5py.File(r / f"embeddings/{g}/00000.h5") as shard, h5py.File(r / f"embeddings/{g}/all.h5") as whole:
            assert np.array_equal(shard["window_id"][:], ids) and np.array_equal(whole["window_id"][:], ids)
            assert np.array_equal(whole["embeddings"][:], shard["embeddings"][:])
            assert whole["sequences"].attrs["genome"] == g and whole["sequences"].attrs["windows"] == len(ids)
        total += len(ids)
        assert (r / f"genomes/{g}/genome.fa.gz.fai").is_file()
    assert not list((r / "packs").rglob("*.tokens.npy"))  # token files go once embedded
    manifest = json.loads((r / "index/manifest.json").read_text())
    assert manifest["index"]["count"] == total and set(manifest["genomes"]) == set("abc")


def test_the_promoter_tracks_windows_are_embedded_by_the_packs_and_the_report_loads_no_model(packed):
    """With a promoter report, each pack embeds its genomes' track windows (every 100 bp) in the pass
    of their own; the report scores them in one thread, without the model."""
    r = packed / "results"
    for pack, genomes in (("a", "ab"), ("c", "c")):
        for g in genomes:
            assert (r / f"packs/{pack}/embeddings/{g}/track.h5").is_file()
    log = (packed / "logs/promoter_report.log").read_text()
    assert "genembed.encode.embed: model" not in log  # no model loaded, no dense scan
    for g in "abc":  # every genome gets a 100-bp track, annotated or not
        lines = (r / f"reports/promoters/{g}.bedgraph").read_text().splitlines()[1:]
        assert {int(f[2]) - int(f[1]) for f in map(str.split, lines)} == {100} and len(lines) > 550
    job = (packed / "run.out").read_text().split("rule promoter_report:")[1].split("\n\n")[0]
    assert "log: logs/promoter_report.log" in job and "threads:" not in job  # one thread (snakemake shows 2 or more)


def test_packed_embeddings_equal_those_of_one_job_per_shard(packed, tmp_path):
    write_config(tmp_path, sheet(tmp_path, "b"), windows={"size": 500, "stride": 250, "shard_size": 100, "pack_bp": 0},
                 **CONFIG)
    snakemake(tmp_path, "--cores", "2", "results/embeddings/b/all.h5")
    assert len(list((tmp_path / "benchmarks/logs/embed/b").glob("*.tsv"))) == 3  # 239 windows in shards of 100
    with h5py.File(tmp_path / "results/embeddings/b/all.h5") as sharded, \
            h5py.File(packed / "results/embeddings/b/all.h5") as pack:
        assert np.array_equal(sharded["window_id"][:], pack["window_id"][:])
        np.testing.assert_allclose(sharded["embeddings"][:], pack["embeddings"][:], atol=2e-3)


def test_a_new_genome_gets_its_own_pack_and_redoes_no_other(packed):
    kept = {p: p.stat().st_mtime_ns for p in (packed / "results").glob("*/[abc]/*") if p.is_file()}
    write_config(packed, sheet(packed, "abcd"), windows={"size": 500, "stride": 250, "pack_bp": 150_000}, **CONFIG)
    jobs = dry_run_jobs(packed)
    assert [w for rule, w in jobs if rule == "embed_pack"] == [{"pack": "d"}]  # not into c's pack, though it has room
    assert [w for rule, w in jobs if rule == "promoter_pack_scores"] == [{"pack": "d"}]  # d has no starts: no retraining
    assert "promoter_model" not in [rule for rule, _ in jobs]
    assert all(w.get("genome") in (None, "d") and w.get("pack") in (None, "d") for _, w in jobs), jobs
    snakemake(packed, "--cores", "2")
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert set(json.loads((packed / "results/index/manifest.json").read_text())["genomes"]) == set("abcd")
