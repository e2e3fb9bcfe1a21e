import gzip
import pysam
import pytest

from genembed.errors import GenembedError
from genembed.data.genome import Genome, prepare_fasta, read_fai


def _plain(path, text: bytes):
    path.write_bytes(text)
    return path


def test_plain_gzip_and_bgzip_inputs_give_identical_sequence(tmp_path, ecoli_sequence):
    text = b">chr\n" + b"\n".join(ecoli_sequence[i : i + 60] for i in range(0, 30_000, 60)) + b"\n"
    plain = _plain(tmp_path / "a.fa", text)
    gz = tmp_path / "a.fa.gz"
    gz.write_bytes(gzip.compress(text))
    bgz = tmp_path / "b.fa.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    seqs = []
    for i, src in enumerate([plain, gz, bgz]):
        out = tmp_path / f"out{i}.fa.gz"
        assert prepare_fasta(src, out) == [("chr", 30_000)]
        seqs.append(Genome(out).fetch("chr", 0, 30_000))
    assert seqs[0] == seqs[1] == seqs[2] == ecoli_sequence[:30_000]


def test_prepared_genome_is_bgzip_with_faidx_indexes(prepared_slice):
    assert read_fai(f"{prepared_slice}.fai") == [("NC_000913.3", 200_000)]
    assert (prepared_slice.parent / "genome.fa.gz.gzi").is_file()
    with open(prepared_slice, "rb") as fh:
        assert fh.read(4) == b"\x1f\x8b\x08\x04"  # gzip with the extra field that marks BGZF blocks
    assert pysam.FastaFile(str(prepared_slice)).fetch("NC_000913.3", 0, 10) == "AGCTTTTCAT"


def test_soft_masked_sequence_is_read_upper_case_and_crlf_is_accepted(tmp_path):
    src = _plain(tmp_path / "m.fa", b">c1 desc\r\nACGTacgtNNnn\r\nggcc\r\n>c2\r\nTTTT\r\n")
    assert prepare_fasta(src, tmp_path / "m.fa.gz") == [("c1", 16), ("c2", 4)]
    assert Genome(tmp_path / "m.fa.gz").fetch("c1", 0, 16) == b"ACGTACGTNNNNGGCC"


@pytest.mark.parametrize("text, message", [
    (b"ACGT\n>c\nACGT\n", "line 1: sequence before the first '>' header"),
    (b">c\nACGT\n>d\n>e\nAC\n", "record 'd' has no sequence"),
    (b">c\nACGT\nAC*T\n", "line 3: invalid character '*'"),
    (b">c\nACGT\n>c\nACGT\n", "line 3: duplicate contig name 'c'"),
    (b">\nACGT\n", "line 1: header without a contig name"),
    (b"", "no FASTA records found"),
])
def test_bad_fasta_gives_one_line_error_naming_file_and_no_output(tmp_path, text, message):
    src = _plain(tmp_path / "bad.fa", text)
    with pytest.raises(GenembedError) as err:
        prepare_fasta(src, tmp_path / "out" / "g.fa.gz")
    assert message in str(err.value) and str(src) in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_truncated_gzip_and_missing_file_are_reported(tmp_path, ecoli_slice):
    data = ecoli_slice[0].read_bytes()
    cut = tmp_path / "cut.fa.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GenembedError, match="truncated"):
        prepare_fasta(cut, tmp_path / "o.fa.gz")
    with pytest.raises(GenembedError, match="not found"):
        prepare_fasta(tmp_path / "nope.fa", tmp_path / "o.fa.gz")
    assert not (tmp_path / "o.fa.gz").exists()


def test_fetch_outside_contig_is_refused(prepared_slice):
    g = Genome(prepared_slice)
    with pytest.raises(GenembedError, match="outside"):
        g.fetch("NC_000913.3", 199_990, 200_010)
    with pytest.raises(GenembedError, match="unknown contig"):
        g.fetch("chrZ", 0, 10)
