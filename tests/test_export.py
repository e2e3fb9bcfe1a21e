"""Per-genome virtual HDF5 over the shards (plain h5py), and AnnData export for scanpy users."""

import h5py
import numpy as np
import polars as pl
import pytest

from genembed.run.cli import main
from genembed.data.store import read_shard, stitch


def test_a_virtual_dataset_stitches_the_shards_without_copying(tmp_path, built_index):
    out = tmp_path / "vds" / "ecoli.h5"
    assert stitch(built_index["shards"], out) == 200
    assert out.stat().st_size < 50_000  # a few kB of mappings, not 200 x 32 float16 rows copied
    shards = [read_shard(s) for s in built_index["shards"]]
    with h5py.File(out) as f:
        assert f["embeddings"].is_virtual and f["window_id"].is_virtual
        assert np.array_equal(f["embeddings"][:], np.concatenate([s.embeddings for s in shards]))
        assert np.array_equal(f["window_id"][:], np.concatenate([s.window_id for s in shards]))
        assert f.attrs["model_fingerprint"] == shards[0].attrs["model_fingerprint"]
        assert np.array_equal(f["embeddings"][150:160], shards[1].embeddings[30:40])  # slicing across shards


def test_the_vds_and_its_shards_move_together(tmp_path, built_index):
    import shutil

    a = tmp_path / "a"
    (a / "emb").mkdir(parents=True)
    copies = [shutil.copy(s, a / "emb" / s.name) for s in built_index["shards"]]
    stitch(copies, a / "ecoli.h5")
    shutil.move(a, tmp_path / "b")  # relative source paths: the folder is portable
    with h5py.File(tmp_path / "b/ecoli.h5") as f:
        assert f["embeddings"][:].shape == (200, 32) and np.abs(f["embeddings"][:]).sum() > 0


def test_cli_exports_anndata_and_virtual_files(tmp_path, ecoli_sequence, tiny_bert):
    anndata = pytest.importorskip("anndata")
    (tmp_path / "g.fa").write_bytes(b">chrA\n" + ecoli_sequence[:20_000] + b"\n>chrB\n" + ecoli_sequence[50_000:60_000] + b"\n")
    assert main(["embed", "--fasta", str(tmp_path / "g.fa"), "--genome", "g", "--out", str(tmp_path / "emb"),
                 "--model", str(tiny_bert), "--window", "1000", "--stride", "1000", "--shard-size", "12",
                 "--tokenizer", "kmer"]) == 0
    assert main(["export", "--embeddings", str(tmp_path / "emb"), "--vds", str(tmp_path / "vds"),
                 "--h5ad", str(tmp_path / "g.h5ad")]) == 0
    adata = anndata.read_h5ad(tmp_path / "g.h5ad")
    assert adata.shape == (30, 32)
    backed = anndata.read_h5ad(tmp_path / "g.h5ad", backed="r")  # X streamed in, readable in slices
    np.testing.assert_array_equal(backed.X[10:20], adata.X[10:20])
    assert list(adata.obs["contig"].unique()) == ["chrA", "chrB"] and adata.uns["genembed"]["pooling"] == "mean"
    with h5py.File(tmp_path / "vds/g.h5") as f:
        np.testing.assert_array_equal(adata.X, f["embeddings"][:].astype(np.float32))
        table = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "emb/windows/g").glob("*.parquet"))])
        assert np.array_equal(f["window_id"][:], table["window_id"].to_numpy())
        # the genome's genome and contig vectors, with the file and in the AnnData export (issue 32)
        from genembed.data.vectors import read_sequence_group
        from genembed.data.store import sequence_vectors
        from genembed.data.layout import discover

        stored = read_sequence_group(f["sequences"])
    (genome,) = discover(tmp_path / "emb")
    made = sequence_vectors(genome)
    assert stored.contigs["contig"].to_list() == ["chrA", "chrB"] == list(adata.uns["sequence_vectors"]["g"]["contigs"])
    assert stored.contigs["windows"].to_list() == [20, 10] and stored.vector.tobytes() == made.vector.tobytes()
    np.testing.assert_array_equal(adata.uns["sequence_vectors"]["g"]["contig_vectors"], made.contig_vectors)
    assert f"{adata.uns['sequence_vectors']['g']['aggregate']}" == "mean of the unit-normalised window vectors"
