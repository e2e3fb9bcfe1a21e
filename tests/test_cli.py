"""The genembed CLI runs the same stages as the workflow, without Snakemake."""

import json

import h5py

from genembed.run.cli import main


def test_cli_embeds_indexes_and_queries_a_genome(tmp_path, ecoli_sequence, tiny_bert, capsys):
    fasta = tmp_path / "slice.fa"
    fasta.write_bytes(b">chrA\n" + ecoli_sequence[:30_000] + b"\n>chrB\n" + ecoli_sequence[100_000:120_000] + b"\n")
    assert main(["embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(tmp_path / "emb"),
                 "--model", str(tiny_bert), "--window", "1000", "--stride", "500", "--shard-size", "40",
                 "--tokenizer", "kmer"]) == 0
    shards = sorted((tmp_path / "emb/embeddings/eco").glob("*.h5"))
    assert len(shards) == 3  # 59 + 39 = 98 windows in shards of 40
    with h5py.File(shards[0]) as f:
        assert f["embeddings"].shape == (40, 32) and f.attrs["window_stride"] == 500
    assert main(["index", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "idx")]) == 0
    manifest = json.loads((tmp_path / "idx/manifest.json").read_text())
    assert manifest["index"]["count"] == 98
    capsys.readouterr()
    assert main(["query", "--index", str(tmp_path / "idx"), "--region", "eco:chrB:5000-6000", "-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split("\t")[3:7] == ["eco", "chrB", "5000", "6000"]
    # reports over the same folders; a BED of TSSs (in the training and the held-out part) labels the promoters
    (tmp_path / "tss.bed").write_text("chrA\t2000\t2001\t.\t0\t+\nchrA\t26000\t26001\t.\t0\t+\n"
                                      "chrB\t3000\t3001\t.\t0\t+\nchrB\t17500\t17501\t.\t0\t-\n")
    assert main(["report", "--embeddings", str(tmp_path / "emb"), "--out", str(tmp_path / "rep"), "--k", "3",
                 "--promoters", f"eco={tmp_path / 'tss.bed'}"]) == 0
    assert (tmp_path / "rep/clusters/clusters.html").is_file() and (tmp_path / "rep/promoters/eco.bw").is_file()
    assert "k = 3, as configured" in (tmp_path / "rep/clusters/clusters.html").read_text()
    assert "promoter BED tss.bed" in (tmp_path / "rep/promoters/promoters.html").read_text()


def test_cli_errors_are_one_line_with_exit_code_1(tmp_path, capsys):
    (tmp_path / "bad.fa").write_text(">a\nACGT\n>a\nACGT\n")
    assert main(["prepare", str(tmp_path / "bad.fa"), str(tmp_path / "out.fa.gz")]) == 1
    err = capsys.readouterr().err
    assert err == f"genembed: error: {tmp_path / 'bad.fa'}: line 3: duplicate contig name 'a'\n"
    assert not (tmp_path / "out.fa.gz").exists()
    assert main(["query", "--index", str(tmp_path), "--sequence", "ACGT"]) == 1
    assert "not a genembed index" in capsys.readouterr().err
