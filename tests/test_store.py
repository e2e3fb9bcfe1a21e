import h5py
import numpy as np
import pytest

from genembed.errors import GenembedError
from genembed.data.io import atomic_path, report_folder
from genembed.data.store import check_consistent, iter_shards, read_attrs, write_shard

ATTRS = {"model": "m", "model_fingerprint": "f1", "pooling": "mean", "layer": -1, "revision": None}


def test_shards_round_trip_as_float16_with_ids_and_attrs(tmp_path):
    emb = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    write_shard(tmp_path / "a.h5", emb, np.arange(5) + 100, ATTRS)
    (shard,) = iter_shards([tmp_path / "a.h5"])
    assert shard.embeddings.dtype == np.float16
    np.testing.assert_allclose(shard.embeddings, emb, atol=1e-2)
    assert shard.window_id.tolist() == [100, 101, 102, 103, 104]
    assert shard.attrs["revision"] == "" and shard.attrs["schema_version"] == 1


def test_empty_shard_is_valid(tmp_path):
    write_shard(tmp_path / "e.h5", np.zeros((0, 8), np.float32), np.zeros(0, np.int64), ATTRS)
    (shard,) = iter_shards([tmp_path / "e.h5"])
    assert shard.embeddings.shape == (0, 8)


def test_shards_that_disagree_on_the_model_are_refused(tmp_path):
    write_shard(tmp_path / "a.h5", np.zeros((1, 4)), np.zeros(1), ATTRS)
    write_shard(tmp_path / "b.h5", np.zeros((1, 4)), np.zeros(1), {**ATTRS, "model_fingerprint": "f2"})
    assert check_consistent([tmp_path / "a.h5"], ("pooling",)).pooling == "mean"
    with pytest.raises(GenembedError, match="model_fingerprint is 'f2' but .*a.h5 has 'f1'; re-embed"):
        check_consistent([tmp_path / "a.h5", tmp_path / "b.h5"], ("model_fingerprint",))


def test_foreign_or_broken_hdf5_is_a_clear_error(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(GenembedError, match="not a genembed embedding shard"):
        read_attrs(tmp_path / "x.h5")
    (tmp_path / "y.h5").write_bytes(b"not hdf5")
    with pytest.raises(GenembedError, match="cannot read HDF5 shard"):
        read_attrs(tmp_path / "y.h5")


def test_an_identity_compares_typed_fields_and_names_those_that_differ():
    import numpy as np

    from genembed.data.identity import QUERY_FIELDS, ShardIdentity

    attrs = {"model_fingerprint": "f1", "tokenizer": "kmer:k=1", "pooling": "mean", "layer": np.int64(-1),
             "window_size": np.int64(500), "window_stride": 250, "precision": "bf16", "dim": np.int64(384)}
    a = ShardIdentity.from_attrs(attrs)  # HDF5 attrs: numpy scalars; strands absent (older shards): forward
    assert a.strands == "forward" and a.layer == -1 and a.to_attrs()["dim"] == 384
    assert ShardIdentity.from_attrs({**attrs, "strands": "forward", "window_size": "500"}) == a
    b = ShardIdentity.from_attrs({**attrs, "pooling": "max", "layer": -2, "precision": "fp32"})
    assert a.diff(b) == ["pooling", "layer", "precision"] and a.diff(b, QUERY_FIELDS) == ["pooling", "layer"]
    assert ShardIdentity.from_attrs(a.to_attrs()) == a
    with pytest.raises(GenembedError, match=r"^q were made otherwise than the index x: pooling 'mean' \(index: 'max'\);"
                                            r" layer -1 \(index: -2\)$"):
        a.require(b, "q", "the index x", "index", QUERY_FIELDS)


@pytest.mark.parametrize("field, other", [
    ("model_fingerprint", "f2"), ("tokenizer", "kmer:k=6"), ("pooling", "cls"), ("layer", -3), ("strands", "average"),
    ("window_size", 1000), ("window_stride", 500), ("precision", "fp32"), ("dim", 256)])
def test_an_identity_diff_names_exactly_the_field_that_differs(field, other):
    from dataclasses import replace

    from genembed.data.identity import INDEX_FIELDS, QUERY_FIELDS, ShardIdentity

    a = ShardIdentity("f1", "kmer:k=1", "mean", -1, "forward", 500, 250, "bf16", 384)
    b = replace(a, **{field: other})
    assert a.diff(b) == [field] and b.diff(a) == [field] and a.diff(a) == []
    assert a.diff(b, QUERY_FIELDS) == ([field] if field in QUERY_FIELDS else [])
    assert set(INDEX_FIELDS) == {f for f in a.to_attrs()}  # every field is compared by an index


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_the_next_writer_removes_what_a_killed_writer_left_files_and_report_folders(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid whose process is gone, as after kill -9
    (tmp_path / f".out.txt.tmp-{dead.pid}").write_text("partial")
    (tmp_path / f".out.txt.tmp-{dead.pid}.fai").write_text("partial")  # a sidecar of the temporary
    folder = tmp_path / f".report.tmp-{dead.pid}"
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "a.bw").write_bytes(b"partial")
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("whole")
    with report_folder(tmp_path / "report") as work:
        (work / "index.html").write_text("<html></html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "report"]


def test_a_shard_is_never_written_with_non_finite_embeddings(tmp_path):
    import numpy as np
    import pytest

    from genembed.errors import GenembedError
    from genembed.data.store import write_shard

    vectors = np.ones((5, 4), dtype=np.float32)
    vectors[2, 1] = 1e6  # past float16's range: infinity once stored
    with pytest.raises(GenembedError, match=r"s.h5: 1 of 5 windows embed to NaN or infinity in float16 \(window ids 12"):
        write_shard(tmp_path / "s.h5", vectors, np.arange(10, 15), {})
    assert list(tmp_path.iterdir()) == []
