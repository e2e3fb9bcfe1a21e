"""Bad input through the CLI: a one-line error naming the file (and line or record), exit code 1,
and nothing left behind. The table in README ("Bad input") lists the same cases; the workflow-level
ones (genome sheet, config schema) are in tests/test_workflow.py."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import pytest

from genembed.run.cli import main
from helpers import REPO

EXAMPLE = REPO / "resources/example"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, ecoli_sequence, tiny_bert):
    """A 30-kb genome embedded and indexed by the CLI, for the report and query cases."""
    d = tmp_path_factory.mktemp("good")
    (d / "g.fa").write_bytes(b">chrA\n" + ecoli_sequence[:30_000] + b"\n")
    assert main(["embed", "--fasta", str(d / "g.fa"), "--genome", "g", "--out", str(d / "emb"), "--model",
                 str(tiny_bert), "--window", "1000", "--stride", "1000", "--tokenizer", "kmer"]) == 0
    assert main(["index", "--embeddings", str(d / "emb"), "--out", str(d / "index")]) == 0
    return d


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _prepare(t: Path, data: bytes | str):
    src = _write(t / "in.fa", data)
    return ["prepare", str(src), str(t / "out/g.fa.gz")], src, [t / "out/g.fa.gz"]


def _truncated_gzip(t: Path):
    raw = gzip.compress(b">c\n" + b"ACGT" * 50_000 + b"\n")
    src = _write(t / "in.fa.gz", raw[: len(raw) // 2])
    return ["prepare", str(src), str(t / "out/g.fa.gz")], src, [t / "out/g.fa.gz"]


def _embed(t: Path, fasta: bytes | str, model: Path, window: str = "1000", blame: str = "fasta"):
    """genembed embed; the error must name the FASTA, the model folder or its weights file."""
    src = _write(t / "in.fa", fasta)
    argv = ["embed", "--fasta", str(src), "--genome", "g", "--out", str(t / "emb"), "--model", str(model),
            "--window", window, "--tokenizer", "kmer"]
    named = {"fasta": src, "model": model, "weights": model / "model.safetensors"}[blame]
    return argv, named, [t / "emb/genomes/g/genome.fa.gz", t / "emb/windows", t / "emb/embeddings", t / "emb/model"]


def _corrupt_model(t: Path, tiny_bert: Path) -> Path:
    folder = t / "model"
    shutil.copytree(tiny_bert, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a download cut short
    return folder


def _report(t: Path, embedded: Path, annotation: str, flag: str = "--annotation"):
    src = _write(t / ("a.bed" if flag == "--promoters" else "a.gff"), annotation)
    argv = ["report", "--embeddings", str(embedded / "emb"), "--out", str(t / "rep"), flag, f"g={src}"]
    return argv, src, [t / "rep/promoters"]


def _query(t: Path, embedded: Path, *what: str, index: Path | None = None):
    argv = ["query", "--index", str(index or embedded / "index"), *what, "--out", str(t / "hits.tsv")]
    return argv, None, [t / "hits.tsv"]


def _other_model(t: Path, embedded: Path):
    from helpers import make_tiny_bert

    other = make_tiny_bert(t / "other-model", seed=1)
    argv, _, outputs = _query(t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG", "--model", str(other))
    return argv, other, outputs


def _corrupt_index(t: Path, embedded: Path):
    index = t / "index"
    shutil.copytree(embedded / "index", index)
    data = (index / "index.faiss").read_bytes()
    (index / "index.faiss").write_bytes(data[: len(data) // 3])
    return _query(t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG", index=index)


def _index_copy(t: Path, embedded: Path, change) -> Path:
    index = t / "index"
    shutil.copytree(embedded / "index", index)
    change(index)
    return index


def _emb_copy(t: Path, embedded: Path, change):
    """`genembed index` over a copy of the embedded folder with one file changed."""
    emb = t / "emb"
    shutil.copytree(embedded / "emb", emb)
    shard = sorted((emb / "embeddings/g").glob("*.h5"))[0]
    named = change(emb, shard)
    return ["index", "--embeddings", str(emb), "--out", str(t / "idx")], named, [t / "idx"]


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _nan_shard(emb: Path, shard: Path) -> Path:
    with h5py.File(shard, "r+") as f:
        f["embeddings"][3] = float("nan")
    return shard


def _colliding(t: Path, embedded: Path, tiny_bert: Path):
    """Two genomes whose ids hash alike, embedded into one folder: `genembed index` must refuse them."""
    from genembed.data.windows import genome_code

    seen: dict[int, str] = {}
    i = 0
    while genome_code(f"g{i}") not in seen:
        seen[genome_code(f"g{i}")] = f"g{i}"
        i += 1
    a, b = seen[genome_code(f"g{i}")], f"g{i}"
    fasta = _write(t / "in.fa", ">c\n" + "ACGTTGCAAGCT" * 300 + "\n")
    for name in (a, b):
        assert main(["embed", "--fasta", str(fasta), "--genome", name, "--out", str(t / "emb"), "--model", str(tiny_bert),
                     "--window", "1000", "--stride", "1000", "--tokenizer", "kmer"]) == 0
    return ["index", "--embeddings", str(t / "emb"), "--out", str(t / "idx")], None, [t / "idx"]


def _garbage_fai(t: Path):
    src = _write(t / "in.fa", ">c\nACGTACGT\n")
    fai = _write(t / "in.fa.fai", "this is not\na samtools index\n")
    return ["prepare", str(src), str(t / "out/g.fa.gz")], fai, [t / "out"]


def _symlink_loop(t: Path):
    (t / "a.fa").symlink_to(t / "b.fa")
    (t / "b.fa").symlink_to(t / "a.fa")
    return ["prepare", str(t / "a.fa"), str(t / "out/g.fa.gz")], t / "a.fa", [t / "out"]


def _embed_as(t: Path, model: Path, *extra: str):
    """genembed embed of a good genome with other options; the error need not name a file."""
    src = _write(t / "in.fa", ">c\n" + "ACGTTGCAAGCT" * 300 + "\n")
    argv = ["embed", "--fasta", str(src), "--out", str(t / "emb"), "--model", str(model), "--window", "1000",
            "--tokenizer", "kmer", *extra]
    return argv, None, [t / "emb"]


def _out_of_vocab(t: Path, tiny_bert: Path) -> Path:
    """The tiny BERT with one 6-mer's token id moved past its vocab_size (a tokenizer of another model)."""
    import json

    folder = t / "model"
    shutil.copytree(tiny_bert, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["model"]["vocab"]["AAAAAA"] = 9_999
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    return folder


def _without_layer(t: Path, tiny_bert: Path) -> Path:
    """The tiny BERT with its last encoder layer's weights cut out of model.safetensors."""
    from safetensors.torch import load_file, save_file

    folder = t / "model"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, folder / "model.safetensors",
              metadata={"format": "pt"})
    return folder


def _second_genome(t: Path, embedded: Path, tiny_bert: Path):
    """A second genome embedded into a copy of the results folder with other windows."""
    shutil.copytree(embedded / "emb", t / "emb")
    argv, _, _ = _embed_as(t, tiny_bert, "--genome", "h", "--window", "500")
    return argv, t / "emb/model/model.json", [t / "emb/genomes/h", t / "emb/embeddings/h"]


def _fifo(t: Path):
    import os

    os.mkfifo(t / "in.fa")
    return ["prepare", str(t / "in.fa"), str(t / "out/g.fa.gz")], t / "in.fa", [t / "out"]


def _resized(t: Path, tiny_bert: Path) -> Path:
    """The tiny BERT with a config.json whose feed-forward width is not its weights' (48, not 64)."""
    import json

    folder = t / "model"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    return folder


def _nan_weights(t: Path, tiny_bert: Path) -> Path:
    """The tiny BERT with every weight NaN."""
    from safetensors.torch import load_file, save_file

    folder = t / "model"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v.float().fill_(float("nan")) if v.is_floating_point() else v for k, v in weights.items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _foreign_faiss(index: Path) -> None:
    import faiss

    other = faiss.IndexIDMap(faiss.IndexFlatIP(int(faiss.read_index(str(index / "index.faiss")).d)))
    faiss.write_index(other, str(index / "index.faiss"))


def _hf_tokenizer_removed(index: Path) -> None:
    """An index whose traced encoder uses the model's own tokenizer, with that tokenizer's file gone."""
    import json

    info = json.loads((index / "query_model.json").read_text())
    info["tokenizer"] = {"kind": "hf"}
    (index / "query_model.json").write_text(json.dumps(info))
    (index / "query_tokenizer.json").unlink(missing_ok=True)


CASES = {
    # FASTA (genembed prepare, which genembed embed and the workflow's prepare_genome run too)
    "fasta without a header": (lambda t, **_: _prepare(t, "ACGT\n>c\nACGT\n"), ["line 1: sequence before the first '>' header"]),
    "empty record": (lambda t, **_: _prepare(t, ">c\nACGT\n>d\n>e\nAC\n"), ["record 'd' has no sequence"]),
    "characters outside IUPAC": (lambda t, **_: _prepare(t, ">c\nACGT\nAC*T\n"), ["line 3: invalid character '*'"]),
    "duplicate contig names": (lambda t, **_: _prepare(t, ">c\nACGT\n>c\nACGT\n"), ["line 3: duplicate contig name 'c'"]),
    "header without a name": (lambda t, **_: _prepare(t, ">\nACGT\n"), ["line 1: header without a contig name"]),
    "empty file": (lambda t, **_: _prepare(t, ""), ["no FASTA records found"]),
    "all-N contig": (lambda t, **_: _prepare(t, ">gap\n" + "N" * 5000 + "\n"), ["no A, C, G or T in any record"]),
    "truncated gzip": (lambda t, **_: _truncated_gzip(t), ["cannot read compressed file", "is it truncated?"]),
    "missing FASTA": (lambda t, **_: (["prepare", str(t / "nope.fa"), str(t / "out/g.fa.gz")], t / "nope.fa",
                                      [t / "out/g.fa.gz"]), ["FASTA file not found"]),
    # genome against the windows and the model (genembed embed)
    "contig shorter than the window": (lambda t, tiny_bert, **_: _embed(t, ">short\n" + "ACGT" * 100 + "\n", tiny_bert),
                                       ["no 1000-bp window fits", "the longest has 400 bp"]),
    "missing model folder": (lambda t, **_: _embed(t, ">c\n" + "ACGT" * 500 + "\n", t / "no-model", blame="model"),
                             ["no-model: model folder not found"]),
    "corrupt model weights": (lambda t, tiny_bert, **_: _embed(t, ">c\n" + "ACGT" * 500 + "\n",
                                                               _corrupt_model(t, tiny_bert), blame="weights"),
                              ["model.safetensors: corrupt or unreadable weights"]),
    "window longer than the model takes": (lambda t, tiny_bert, **_: _embed(t, ">c\n" + "ACGT" * 2000 + "\n", tiny_bert,
                                                                            "4000", blame="model"),
                                           ["windows.size 4000 bp does not fit", "at most 512 tokens"]),
    # annotation and promoter BED (genembed report)
    "annotation naming an unknown contig": (lambda t, embedded, **_: _report(
        t, embedded, "chrZ\tsrc\tgene\t100\t900\t.\t+\t.\tID=x\n"), ["contig 'chrZ' is not in the genome FASTA"]),
    "annotation past the contig end": (lambda t, embedded, **_: _report(
        t, embedded, "chrA\tsrc\tgene\t29000\t31000\t.\t+\t.\tID=x\n"), ["features on 'chrA' end at 31000, past its length 30000"]),
    "GFF that does not parse": (lambda t, embedded, **_: _report(t, embedded, "##gff-version 3\nchrA\tsrc\tgene\t100\n"),
                                ["line 2: expected 9 tab-separated GFF/GTF columns, found 4"]),
    "GTF with non-integer coordinates": (lambda t, embedded, **_: _report(
        t, embedded, 'chrA\tsrc\tgene\tone\t900\t.\t+\t.\tgene_id "g";\n'), ["line 1: start/end are not integers"]),
    "promoter BED past the contig end": (lambda t, embedded, **_: _report(t, embedded, "chrA\t100\t40000\n", "--promoters"),
                                         ["line 1: end 40000 is past the length 30000 of 'chrA'"]),
    # queries (genembed query)
    "query with invalid bases": (lambda t, embedded, **_: _query(t, embedded, "--sequence", "ACGTACGTJJACGT"),
                                 ["query 'query': characters that are not IUPAC nucleotides: 'J'"]),
    "query shorter than one token": (lambda t, embedded, **_: _query(t, embedded, "--sequence", "ACG"),
                                     ["query 'query': 3 bp is shorter than one 6-mer token"]),
    "query FASTA with a bad record": (lambda t, embedded, **_: _query(
        t, embedded, "--fasta", str(_write(t / "q.fa", ">q1\nACGTACGTAC\n>q1\nACGTACGTAC\n"))),
        ["q.fa: line 3: duplicate query name 'q1'"]),
    "query with another model than the index": (lambda t, embedded, **_: _other_model(t, embedded),
                                                ["model files differ from those the index was built with"]),
    "corrupt index file": (lambda t, embedded, **_: _corrupt_index(t, embedded), ["index.faiss: corrupt or unreadable"]),
    "folder that is not an index": (lambda t, embedded, **_: _query(t, embedded, "--sequence", "ACGTACGTAC", index=t),
                                    ["not a genembed index"]),
    # round two
    "FASTA that is a directory": (lambda t, **_: (["prepare", str(t), str(t / "out/g.fa.gz")], t, [t / "out"]),
                                  ["a directory, not a FASTA file"]),
    "FASTA behind a loop of symbolic links": (lambda t, **_: _symlink_loop(t), ["a loop of symbolic links"]),
    "garbage .fai beside the FASTA": (lambda t, **_: _garbage_fai(t), ["not a samtools .fai index"]),
    "k below 1": (lambda t, embedded, **_: _query(t, embedded, "--sequence", "ACGTACGTAC", "-k", "0"),
                  ["-k must be at least 1, not 0"]),
    "all-N query": (lambda t, embedded, **_: _query(t, embedded, "--sequence", "N" * 600),
                    ["query 'query': no A, C, G or T"]),
    "index without its traced encoder": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG",
        index=_index_copy(t, embedded, lambda i: (i / "query_model.ts").unlink())), ["query_model.ts: missing"]),
    "truncated window table in the index": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG",
        index=_index_copy(t, embedded, lambda i: _truncate(i / "windows.parquet"))),
        ["windows.parquet: unreadable window table"]),
    "missing window table in the index": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG",
        index=_index_copy(t, embedded, lambda i: (i / "windows.parquet").unlink())),
        ["windows.parquet: window table not found"]),
    "truncated embedding shard": (lambda t, embedded, **_: _emb_copy(t, embedded, lambda e, s: _truncate(s)),
                                  ["00000.h5: cannot read HDF5 shard"]),
    "NaN embeddings in a shard": (lambda t, embedded, **_: _emb_copy(t, embedded, _nan_shard),
                                  ["00000.h5: 1 windows have NaN or infinite embeddings"]),
    "truncated window table of a shard": (lambda t, embedded, **_: _emb_copy(
        t, embedded, lambda e, s: _truncate(e / "windows/g/00000.parquet")), ["00000.parquet: unreadable window table"]),
    "genome ids whose hashes collide": (lambda t, embedded, tiny_bert, **_: _colliding(t, embedded, tiny_bert),
                                        ["hash alike"]),
    # round three
    "genome id that is a path": (lambda t, tiny_bert, **_: _embed_as(t, tiny_bert, "--genome", ".."),
                                 ["genome id '..': not a valid id"]),
    "genome id of 300 characters": (lambda t, tiny_bert, **_: _embed_as(t, tiny_bert, "--genome", "g" * 300),
                                    ["not a valid id (longer than 128 characters)"]),
    "device that is not one genembed runs on": (lambda t, tiny_bert, **_: _embed_as(
        t, tiny_bert, "--genome", "g", "--device", "tpu:7"), ["embed.device 'tpu:7' is not a device genembed runs on"]),
    "the meta device": (lambda t, tiny_bert, **_: _embed_as(t, tiny_bert, "--genome", "g", "--device", "meta"),
                        ["embed.device 'meta' is not a device"]),
    "token ids past the model's vocabulary": (lambda t, tiny_bert, **_: _embed(
        t, ">c\n" + "A" * 3000 + "\n", _out_of_vocab(t, tiny_bert), blame="model"),
        ["token id 9999 exceeds the model's vocab_size"]),
    "model weights with a layer missing": (lambda t, tiny_bert, **_: _embed(
        t, ">c\n" + "ACGT" * 500 + "\n", _without_layer(t, tiny_bert), blame="model"),
        ["the weights file lacks weights the model needs (encoder.layer.1."]),
    "promoter BED of two promoters": (lambda t, embedded, **_: _report(
        t, embedded, "chrA\t1000\t1001\t.\t0\t+\nchrA\t20000\t20001\t.\t0\t-\n", "--promoters"),
        ["windows are all of one class (too few promoters for a"]),
    "second genome with another window size": (lambda t, embedded, tiny_bert, **_: _second_genome(t, embedded, tiny_bert),
                                               ["holds genomes embedded with another window size, window stride (g)"]),
    "query --out naming a directory": (lambda t, embedded, **_: (
        ["query", "--index", str(embedded / "index"), "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG", "--out", str(t)],
        t, []), ["a directory; name a file to write the hits to"]),
    "export of a genome the folder lacks": (lambda t, embedded, **_: (
        ["export", "--embeddings", str(embedded / "emb"), "--genome", "nope", "--h5ad", str(t / "x.h5ad")],
        embedded / "emb", [t / "x.h5ad"]), ["no genome 'nope' (it has g)"]),
    "FASTA through a pipe": (lambda t, **_: _fifo(t), ["a pipe or device, not a FASTA file (pipes are not supported"]),
    "IVF-PQ index over too few windows": (lambda t, embedded, **_: (
        ["index", "--embeddings", str(embedded / "emb"), "--out", str(t / "idx"), "--type", "ivfpq"], None, [t / "idx"]),
        ["index.type ivfpq: OPQ4,IVF16,PQ4 needs at least 9,984 windows to train on, and this collection has 30"]),
    "index without its stored vectors": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG",
        index=_index_copy(t, embedded, lambda i: (i / "vectors.npy").unlink())), ["vectors.npy: missing"]),
    "tune views longer than the model takes": (lambda t, tiny_bert, **_: (
        ["tune", "--fasta", str(_write(t / "in.fa", ">c\n" + "ACGT" * 5000 + "\n")), "--out", str(t / "tuned"),
         "--model", str(tiny_bert), "--tokenizer", "kmer", "--seq-bp", "50000", "--steps", "2"], tiny_bert, [t / "tuned"]),
        ["tune: views of 50000 bp take about 8336 tokens", "takes at most 512; lower --seq-bp"]),
    "config that contradicts the weights": (lambda t, tiny_bert, **_: _embed(
        t, ">c\n" + "ACGT" * 500 + "\n", _resized(t, tiny_bert), blame="model"),
        ["config.json does not match the weights: encoder.layer.0.intermediate.dense.bias is [64] in the weights file"
         " but [48] by the config (and 5 more)"]),
    "model weights that are NaN": (lambda t, tiny_bert, **_: _embed(
        t, ">c\n" + "ACGT" * 500 + "\n", _nan_weights(t, tiny_bert), blame="model"),
        ["weight tensors hold NaN or infinity (", "the weights file is damaged: fetch it again"]),
    "N filter that is not a fraction": (lambda t, tiny_bert, **_: _embed_as(t, tiny_bert, "--genome", "g",
                                                                          "--max-n-fraction", "nan"),
                                        ["windows.max_n_fraction must be between 0 and 1, not nan"]),
    "server port out of range": (lambda t, embedded, **_: (
        ["serve", "--index", str(embedded / "index"), "--port", "70000"], None, []), ["--port 70000: not a port (1-65535)"]),
    "AnnData export to a directory": (lambda t, embedded, **_: (
        ["export", "--embeddings", str(embedded / "emb"), "--h5ad", str(t)], t, []),
        ["a directory; name a file to write"]),
    "index --out naming a file": (lambda t, embedded, **_: (
        ["index", "--embeddings", str(embedded / "emb"), "--out", str(_write(t / "afile", "x"))], t / "afile", []),
        ["a file; the index is a folder"]),
    "index.faiss of another index": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG", index=_index_copy(t, embedded, _foreign_faiss)),
        ["index.faiss: 0 vectors, but", "windows.parquet lists 30 windows"]),
    "index without its query tokenizer": (lambda t, embedded, **_: _query(
        t, embedded, "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG",
        index=_index_copy(t, embedded, _hf_tokenizer_removed)), ["query_tokenizer.json: missing"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_naming_the_file_with_exit_1_and_no_output(case, tmp_path, capsys, embedded, tiny_bert):
    make, expected = CASES[case]
    argv, source, outputs = make(tmp_path, embedded=embedded, tiny_bert=tiny_bert)
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("genembed: error: ") and err.count("\n") == 1, err
    if source is not None:
        assert str(source) in err, err
    for text in expected:
        assert text in err, err
    for path in outputs:
        assert not path.exists(), f"{path} was left behind"


def test_the_readme_table_lists_every_case():
    readme = (REPO / "README.md").read_text()
    missing = [case for case in CASES if f"| {case} |" not in readme]
    assert not missing, f"README 'Bad input' table lacks: {missing}"


def test_iupac_codes_lower_case_and_crlf_are_valid_input(tmp_path, tiny_bert):
    fasta = _write(tmp_path / "ok.fa", ">c soft-masked, with ambiguity codes\r\n"
                   + ("acgtRYKMSWBDHVNacgt" * 120) + "\r\n")
    assert main(["embed", "--fasta", str(fasta), "--genome", "ok", "--out", str(tmp_path / "emb"), "--model",
                 str(tiny_bert), "--window", "500", "--stride", "250", "--tokenizer", "kmer",
                 "--max-n-fraction", "1.0"]) == 0
    with h5py.File(next((tmp_path / "emb/embeddings/ok").glob("*.h5"))) as f:
        assert f["embeddings"].shape[0] == 8  # 2,280 bp: (2280 - 500) // 250 + 1 windows, none dropped
