import shutil
from dataclasses import replace
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from genembed.errors import GenembedError
from genembed.search.index import IndexSettings, read_index, read_manifest
from genembed.search.build import build_index
from genembed.data.vectors import normalise
from genembed.data.store import read_shard


def test_index_holds_every_window_under_its_id_with_cosine_scores(built_index):
    index = read_index(built_index["dir"])
    table = pl.read_parquet(built_index["dir"] / "windows.parquet")
    ids = np.concatenate([pl.read_parquet(w)["window_id"].to_numpy() for w in built_index["windows"]])
    assert index.ntotal == len(table) == len(ids) == 200
    assert np.array_equal(table["window_id"].to_numpy(), ids)
    assert table.columns == ["window_id", "genome", "contig", "start", "end"]
    shard = read_shard(built_index["shards"][1])
    scores, found = index.search(normalise(shard.embeddings[:5]), 1)
    assert np.array_equal(found[:, 0], shard.window_id[:5])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


def test_manifest_fingerprints_the_model_and_settings(built_index):
    m = read_manifest(built_index["dir"])
    assert m["model"] == built_index["plan"].to_json()
    assert m["index"] == {"factory": "Flat", "metric": "cosine (inner product of L2-normalised vectors)",
                          "dim": 32, "count": 200, "trained_for": 200, "nprobe": 16, "ef_search": 64, "rerank": 1}
    assert m["settings"]["tokenizer"] == "kmer(k=6,non-overlapping)" and m["settings"]["window_size"] == 1000
    assert m["genomes"]["ecoli"].endswith("genome.fa.gz")
    # typed views: the run's plan and the shards' identity, as the index was built
    assert m.plan == built_index["plan"] and m.identity.window_size == 1000
    assert m.model().source == built_index["plan"].folder and m.model("elsewhere").source == "elsewhere"


def test_a_moved_index_embeds_queries_with_the_models_source_when_its_folder_is_gone(built_index):
    from genembed.search.index import IndexManifest

    m = IndexManifest({**read_manifest(built_index["dir"]), "model": {**built_index["plan"].to_json(), "folder": "/gone"}})
    assert m.model().source == built_index["plan"].source  # a hub id, where the folder no longer exists


def test_an_index_manifest_of_the_previous_layout_still_loads(tmp_path, built_index):
    """A manifest as genembed wrote it before genome levels, strands, k-mer tables and typed views:
    the typed plan and identity still come out of it (absent strands read as forward)."""
    import json

    from genembed.encode.embed import EmbedSettings
    from genembed.search.index import MANIFEST_FILE

    old = tmp_path / "old"
    shutil.copytree(built_index["dir"], old)
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    manifest.pop("levels")
    manifest["settings"].pop("strands")
    for key in ("kmer_tables", "tokenizer_class", "model_type", "hidden_size", "embed"):
        manifest["model"].pop(key)
    manifest["model"]["windows"].pop("max_bp")
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))
    m = read_manifest(old)
    assert m.plan.fingerprint == built_index["plan"].fingerprint and m.plan.windows.size == 1000
    assert m.plan.embed == EmbedSettings() and m.plan.kmer_tables is None
    assert m.identity.strands == "forward"
    assert m.identity.diff(read_manifest(built_index["dir"]).identity) == []


@pytest.mark.parametrize("factory", ["IVF4,Flat", "HNSW16", "PQ8x4"])
def test_other_factories_are_trained_on_a_sample_and_keep_window_ids(tmp_path, built_index, factory):
    m = build_index([built_index["genome"]], tmp_path, built_index["plan"], IndexSettings(factory=factory, train_size=150))
    index = read_index(tmp_path)
    assert m["index"]["factory"] == factory and index.ntotal == 200 and index.is_trained
    shard = read_shard(built_index["shards"][0])
    _, found = index.search(normalise(shard.embeddings[:3]), 5)
    every_id = set(pl.read_parquet(tmp_path / "windows.parquet")["window_id"].to_list())
    assert set(found.ravel().tolist()) <= every_id  # hits come back as window ids
    if not factory.startswith("PQ"):  # lossy 4-bit codes may rank near-identical windows first
        assert set(shard.window_id[:3]) <= set(found.ravel())


def test_bad_factory_string_is_a_clear_error(tmp_path, built_index):
    with pytest.raises(GenembedError, match="not a valid FAISS factory string"):
        build_index([built_index["genome"]], tmp_path, built_index["plan"], IndexSettings(factory="Bogus9"))


def test_shards_of_another_model_are_refused(tmp_path, built_index):
    other = replace(built_index["plan"], fingerprint="0" * 64, source="other")
    with pytest.raises(GenembedError, match="another model"):
        build_index([built_index["genome"]], tmp_path, other)
    assert not any(tmp_path.iterdir())


def test_corrupt_index_file_is_a_clear_error(tmp_path, built_index):
    copy = tmp_path / "idx"
    shutil.copytree(built_index["dir"], copy)
    data = (copy / "index.faiss").read_bytes()
    (copy / "index.faiss").write_bytes(data[: len(data) // 3])
    with pytest.raises(GenembedError, match="corrupt or unreadable FAISS index"):
        read_index(copy)
    from genembed.search.export import QUERY_MODEL, load_query_model

    (copy / QUERY_MODEL).write_bytes((copy / QUERY_MODEL).read_bytes()[:500])
    with pytest.raises(GenembedError, match="query_model.ts: does not match the checksum recorded"):
        load_query_model(copy, read_manifest(copy))
    (copy / "manifest.json").write_text("{")
    with pytest.raises(GenembedError, match="invalid JSON"):
        read_manifest(copy)


def test_a_traced_encoder_swapped_into_an_index_is_never_loaded(tmp_path, built_index):
    """The traced query encoder is code (TorchScript): only the file genembed wrote is loaded."""
    import torch

    from genembed.search.export import QUERY_MODEL, load_query_model

    copy = tmp_path / "idx"
    shutil.copytree(built_index["dir"], copy)
    assert load_query_model(copy, read_manifest(copy)) is not None
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(copy / QUERY_MODEL))  # valid, but not ours
    with pytest.raises(GenembedError, match="does not match the checksum recorded when the index was built"):
        load_query_model(copy, read_manifest(copy))


def test_index_type_auto_follows_the_collection_size_and_factories_override_it():
    auto = IndexSettings()
    assert auto.factory_for(50_000, 256) == "Flat"
    assert auto.factory_for(500_000, 256) == "HNSW32"
    assert auto.factory_for(6_000_000, 256) == "OPQ32,IVF2048,PQ32"  # 39 training vectors per list
    assert IndexSettings(train_size=400_000).factory_for(6_000_000, 256) == "OPQ32,IVF8192,PQ32"
    for dim, m in ((512, 32), (768, 48), (1024, 32), (2560, 40)):  # codes plus 8-byte ids fit 64 B per vector
        assert auto.factory_for(6_000_000, dim).endswith(f",PQ{m}")
    assert IndexSettings(type="ivf").factory_for(1_000_000, 256) == "IVF2048,Flat"
    assert IndexSettings(type="ivf").factory_for(400, 32) == "IVF16,Flat"  # never fewer than 16 lists
    assert IndexSettings(type="hnsw", factory="IVF64,SQ8").factory_for(10**6, 256) == "IVF64,SQ8"
    with pytest.raises(GenembedError, match="index.type must be one of"):
        IndexSettings(type="annoy")


def test_search_knobs_from_the_manifest_are_applied_when_an_index_is_opened(tmp_path, built_index):
    import faiss

    for factory, check in (("IVF8,Flat", lambda ix: faiss.extract_index_ivf(ix).nprobe == 5),
                           ("HNSW16", lambda ix: faiss.downcast_index(ix.index).hnsw.efSearch == 77)):
        out = tmp_path / factory.replace(",", "_")
        m = build_index([built_index["genome"]], out, built_index["plan"], IndexSettings(factory=factory, nprobe=5, ef_search=77))
        assert check(read_index(out, m["index"]))


def test_ivf_lists_are_merged_on_disk_beside_the_index_and_the_folder_can_move(tmp_path, built_index):
    import faiss

    out = tmp_path / "idx"
    for _ in range(2):  # a second merge replaces the lists file; the first one is removed
        build_index([built_index["genome"]], out, built_index["plan"], IndexSettings(factory="IVF4,Flat", train_size=200))
    ivfdata = list(out.glob("*.ivfdata"))
    assert len(ivfdata) == 1 and ivfdata[0].stat().st_size == 200 * (32 * 4 + 8)  # vectors and ids
    moved = tmp_path / "elsewhere"
    shutil.move(out, moved)
    index = read_index(moved, {"nprobe": 4})
    lists = faiss.extract_index_ivf(index).invlists
    assert isinstance(faiss.downcast_InvertedLists(lists), faiss.OnDiskInvertedLists) and index.ntotal == 200
    shard = read_shard(built_index["shards"][0])
    scores, found = index.search(normalise(shard.embeddings[:3]), 1)  # every list probed: exact
    assert np.array_equal(found[:, 0], shard.window_id[:3])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    next(moved.glob("*.ivfdata")).unlink()
    with pytest.raises(GenembedError, match="corrupt or unreadable FAISS index"):
        read_index(moved)


def test_opening_an_on_disk_index_prints_nothing_on_stdout(tmp_path, built_index):
    """Query results go to stdout: FAISS's native notes about the lists file must not."""
    build_index([built_index["genome"]], tmp_path, built_index["plan"], IndexSettings(factory="IVF4,Flat", train_size=200))
    code = f"from genembed.search.index import read_index; read_index({str(tmp_path)!r}); print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout == "ok\n"
