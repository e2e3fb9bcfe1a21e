"""Faults beyond bad files: a full disk, two runs writing one folder, very many contigs or one very long
line, and inputs that used to give silent wrong answers (biotypes read from other attributes, line
ends and byte-order marks, genome ids that name each other's files)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from genembed.data.annotation import read_annotation, with_classes
from genembed.run.cli import main
from genembed.data.genome import Genome, prepare_fasta
from helpers import DEFAULT_MODEL

EMBED = ["--model", str(DEFAULT_MODEL), "--tokenizer", "kmer", "--k", "1"]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size (kB), mounted for the test and unmounted after; skipped where this
    process may not mount one."""
    mounted = []

    def mount(kb: int) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        target.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(target)], capture_output=True,
                             text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip() or 'mount failed'})")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", str(target)], capture_output=True)


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


def _genome(tmp_path: Path, sequence: bytes, kb: int) -> Path:
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">c\n" + sequence[: kb * 1000] + b"\n")
    return fasta


@pytest.mark.parametrize("kb", [400, 1900])  # full while writing tokens; too little room for the embeddings
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporaries(tmp_path, small_disk, ecoli_sequence,
                                                                             capsys, kb):
    disk = small_disk(kb)
    fasta = _genome(tmp_path, ecoli_sequence, 200)
    assert main(["embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(disk / "emb"), *EMBED]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"genembed: error: {disk}/emb/") and err.rstrip().endswith(
        ("no space left on device", "needed)")) and err.count("\n") == 1, err
    assert "no space left on device" in err and not _temporaries(disk)


def test_index_and_query_on_a_full_disk_are_one_line(tmp_path, small_disk, default_index, ecoli_sequence, capsys):
    disk = small_disk(200)  # smaller than the index's vectors and genome copy
    assert main(["index", "--embeddings", str(default_index["results"]), "--out", str(disk / "idx")]) == 1
    err = capsys.readouterr().err
    assert "no space left on device" in err and err.count("\n") == 1 and not _temporaries(disk), err
    fasta = tmp_path / "q.fa"
    fasta.write_text("".join(f">q{i}\n{ecoli_sequence[i * 300:i * 300 + 600].decode()}\n" for i in range(400)))
    assert main(["query", "--index", str(default_index["dir"]), "--fasta", str(fasta), "-k", "50",
                 "--out", str(disk / "hits.tsv")]) == 1
    err = capsys.readouterr().err
    assert err == f"genembed: error: {disk / 'hits.tsv'}: no space left on device\n", err
    assert not (disk / "hits.tsv").exists() and not _temporaries(disk)


def test_a_second_run_writing_the_same_folder_is_refused_and_the_first_completes(tmp_path, ecoli_sequence):
    fasta = _genome(tmp_path, ecoli_sequence, 100)
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "genembed.run.cli", "embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(out),
           *EMBED]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / ".genembed.lock").is_file() or not (out / ".genembed.lock").read_text():
        assert first.poll() is None, first.communicate()
    second = subprocess.run(cmd, capture_output=True, text=True)
    assert second.returncode == 1
    assert second.stderr == (f"genembed: error: {out}: another genembed run (pid {first.pid}) is writing here;"
                             " wait for it to finish, or write elsewhere\n")
    assert first.wait(300) == 0
    index = [sys.executable, "-m", "genembed.run.cli", "index", "--embeddings", str(out), "--out", str(tmp_path / "idx")]
    assert subprocess.run(index, capture_output=True).returncode == 0  # the winner's folder is whole
    assert not (out / ".genembed.lock").exists()


def test_a_hundred_thousand_tiny_contigs_and_a_megabase_line_run_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(0)
    bases = np.frombuffer(b"ACGT", np.uint8)
    many = tmp_path / "many.fa.gz"
    with gzip.open(many, "wb", compresslevel=1) as fh:
        seq = bases[rng.integers(0, 4, 100_000 * 120)].tobytes()
        fh.write(b"".join(b">c%d\n%s\n" % (i, seq[i * 120 : (i + 1) * 120]) for i in range(100_000)))
    line = tmp_path / "line.fa"
    line.write_bytes(b">one\n" + bases[rng.integers(0, 4, 1_000_000)].tobytes())  # no newline at all
    code = ("import sys; from genembed.data.genome import prepare_fasta; "
            "n = prepare_fasta(sys.argv[1], sys.argv[2]); "
            "peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(len(n), sum(l for _, l in n), peak)")
    for src, contigs, bp in ((many, 100_000, 12_000_000), (line, 1, 1_000_000)):
        res = subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"{src.stem}.out.fa.gz")],
                             capture_output=True, text=True, check=True)
        n, total, peak_kb = map(int, res.stdout.split())
        assert (n, total) == (contigs, bp) and peak_kb < 600_000, res.stdout
    genome = Genome(tmp_path / "line.out.fa.gz")
    assert genome.fetch("one", 999_990, 1_000_000) == line.read_bytes()[-10:]
    genome.close()
    # windows that fit no tiny contig: one clear line, and nothing left behind
    out = tmp_path / "emb"
    assert main(["embed", "--fasta", str(many), "--genome", "many", "--out", str(out), *EMBED]) == 1
    assert not out.exists()


@pytest.mark.parametrize("raw", [
    b">c1 cr only\rACGTACGTAC\rGTAC\r>c2\rACGTTT\r",
    b">c1 mixed\r\nACGTACGTAC\rGTAC\n>c2\r\nACGTTT\r\n",
    b"\xef\xbb\xbf>c1 with a byte-order mark\nACGTACGTACGTAC\n>c2\nACGTTT\n",
])
def test_cr_line_ends_and_a_byte_order_mark_are_valid_fasta(tmp_path, raw):
    src = tmp_path / "in.fa"
    src.write_bytes(raw)
    assert prepare_fasta(src, tmp_path / "out.fa.gz") == [("c1", 14), ("c2", 6)]
    genome = Genome(tmp_path / "out.fa.gz")
    assert genome.fetch("c1", 0, 14) == b"ACGTACGTACGTAC"
    genome.close()


def test_a_biotype_is_read_from_its_own_attribute_only(tmp_path):
    gtf = tmp_path / "a.gtf"
    gtf.write_text(
        'chrA\tsrc\tgene\t100\t900\t.\t+\t.\tgene_id "g1"; note "renamed; old gene_biotype rRNA"; gene_biotype "protein_coding";\n'
        'chrA\tsrc\tgene\t1000\t1900\t.\t+\t.\tgene_id "g2"; gene_biotype "rRNA";\n')
    gff = tmp_path / "a.gff"
    gff.write_text("##gff-version 3\n"
                   "chrA\tsrc\tgene\t100\t900\t.\t+\t.\tID=g1;Note=old gene_biotype%3DrRNA;gene_biotype=protein_coding\n"
                   "chrA\tsrc\tgene\t1000\t1900\t.\t+\t.\tID=g2;biotype=tRNA\n")
    for path, second in ((gtf, "rRNA"), (gff, "tRNA")):
        features = with_classes(read_annotation(path))
        assert features["biotype"].to_list() == ["protein_coding", second]
        assert features["rna_class"].to_list() == [None, second]


def test_genome_ids_that_name_each_others_files_do_not_clash(tmp_path, ecoli_sequence):
    """`eco` and `eco.h5`: each genome's shards and its stitched file live inside its own folder."""
    from genembed.data.layout import STITCHED, discover
    from genembed.data.store import stitch

    fasta = _genome(tmp_path, ecoli_sequence, 30)
    for name in ("eco", "eco.h5"):
        assert main(["embed", "--fasta", str(fasta), "--genome", name, "--out", str(tmp_path / "emb"), *EMBED]) == 0
    genomes = {g.name: g for g in discover(tmp_path / "emb")}
    assert set(genomes) == {"eco", "eco.h5"}
    for name, g in genomes.items():
        assert stitch(g.shards, tmp_path / "emb" / STITCHED.format(genome=name)) == 119
    assert os.path.isdir(tmp_path / "emb/embeddings/eco.h5")


def test_an_unreadable_fasta_is_a_permission_error_not_a_truncated_file(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("running as root, which reads any file: no permission error to provoke")
    src = tmp_path / "locked.fa"
    src.write_text(">c\nACGT\n")
    src.chmod(0)
    assert main(["prepare", str(src), str(tmp_path / "out.fa.gz")]) == 1
    assert capsys.readouterr().err == f"genembed: error: {src}: permission denied (cannot read the FASTA file)\n"


def test_stitching_notices_a_shard_cut_short_even_with_its_old_mtime(tmp_path, built_index):
    import shutil

    from genembed.errors import GenembedError
    from genembed.data.store import stitch

    shards = [Path(shutil.copy(s, tmp_path / s.name)) for s in built_index["shards"]]
    stamp = shards[1].stat()
    shards[1].write_bytes(shards[1].read_bytes()[:-2000])  # the tail of its data is gone
    os.utime(shards[1], ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # as a copy that kept the time would
    with pytest.raises(GenembedError, match=f"{shards[1].name}: .*(truncated|cannot read)"):
        stitch(shards, tmp_path / "all.h5")
    assert not (tmp_path / "all.h5").exists()


def test_ctrl_c_is_one_line_and_leaves_whole_shards_only(tmp_path, ecoli_sequence):
    """SIGINT (Ctrl-C) in the middle of an embedding: "genembed: interrupted" and exit code 130, not a
    KeyboardInterrupt traceback; the shards written are whole (every one of them reads)."""
    import signal

    from genembed.data.store import read_shard

    fasta = _genome(tmp_path, ecoli_sequence, 200)
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "genembed.run.cli", "embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(out),
           "--shard-size", "100", *EMBED]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shards = out / "embeddings/eco"
    while not (shards.is_dir() and any(shards.glob("*.h5"))):
        assert run.poll() is None, run.communicate()
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130 and err == "genembed: interrupted\n", err
    assert all(read_shard(p).embeddings.shape[0] for p in shards.glob("*.h5"))


def test_an_index_build_killed_before_its_end_leaves_no_manifest(tmp_path, ecoli_sequence):
    """kill -9 of `genembed index` once the traced query encoder is written (while E-values are being
    calibrated): the folder has no manifest.json, so it is not taken for a whole index."""
    import signal
    import time

    fasta = _genome(tmp_path, ecoli_sequence, 100)
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    assert main(["embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(emb), *EMBED]) == 0
    run = subprocess.Popen([sys.executable, "-m", "genembed.run.cli", "index", "--embeddings", str(emb), "--out", str(idx)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (idx / "query_model.json").is_file():
        assert run.poll() is None, "the build ended before its query encoder was written"
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (idx / "index.faiss").is_file() and not (idx / "manifest.json").exists()
    assert main(["query", "--index", str(idx), "--sequence", "ACGTAGCTAGCTAGCATCGATCGACTAG"]) == 1  # "not a genembed index"


def test_embedding_again_after_the_fasta_changed_embeds_the_new_sequence(tmp_path, ecoli_sequence, tiny_bert, capsys):
    """The same genome id over a FASTA whose sequence changed: the shards are made again from the new
    sequence (a shard names the checksum of the sequence it was made from), and the shards the
    shorter genome no longer has are removed; the index then finds the new sequence, not the old."""
    fasta, out = tmp_path / "g.fa", tmp_path / "emb"
    embed = ["embed", "--fasta", str(fasta), "--genome", "g", "--out", str(out), "--model", str(tiny_bert),
             "--window", "1000", "--stride", "1000", "--shard-size", "20", "--tokenizer", "kmer"]
    fasta.write_bytes(b">chrA\n" + ecoli_sequence[:50_000] + b"\n")
    assert main(embed) == 0
    assert len(list((out / "embeddings/g").glob("*.h5"))) == 3  # 50 windows in shards of 20
    capsys.readouterr()
    assert main(embed) == 0  # unchanged: nothing to do
    assert "0 windows embedded now" in capsys.readouterr().out
    fasta.write_bytes(b">chrA\n" + ecoli_sequence[100_000:130_000] + b"\n")
    assert main(embed) == 0
    assert "30 windows embedded now" in capsys.readouterr().out
    assert len(list((out / "embeddings/g").glob("*.h5"))) == 2 and len(list((out / "windows/g").glob("*.parquet"))) == 2
    assert main(["index", "--embeddings", str(out), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    new = ecoli_sequence[110_000:111_000].decode()
    assert main(["query", "--index", str(tmp_path / "idx"), "--sequence", new, "-k", "1", "--no-verify"]) == 0
    top = capsys.readouterr().out.splitlines()[1].split("\t")
    assert top[3:7] == ["g", "chrA", "10000", "11000"]


def test_a_window_size_without_a_stride_gets_half_of_it(tmp_path, ecoli_sequence, tiny_bert):
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b">chrA\n" + ecoli_sequence[:2_000] + b"\n")
    assert main(["embed", "--fasta", str(fasta), "--genome", "g", "--out", str(tmp_path / "emb"), "--model", str(tiny_bert),
                 "--window", "120", "--tokenizer", "kmer"]) == 0
    with h5py.File(next((tmp_path / "emb/embeddings/g").glob("*.h5"))) as f:
        assert f.attrs["window_stride"] == 60 and f["embeddings"].shape[0] == (2_000 - 120) // 60 + 1
