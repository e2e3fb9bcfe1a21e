import json
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from genembed.errors import GenembedError
from genembed.search.hits import format_hits
from genembed.search.loci import LOCUS_COLUMNS
from genembed.search.query import Index, LocusSearch, Region
from genembed.data.store import read_shard, write_shard
from helpers import kmer_plan


@pytest.fixture(scope="module")
def index(built_index):
    return Index.open(built_index["dir"])


def test_a_window_queried_by_its_own_region_is_its_own_top_hit(index):
    for start in (0, 57_000, 150_000):
        hits = index.search_region(f"ecoli:NC_000913.3:{start}-{start + 1000}", LocusSearch(k=5))
        top = hits.row(0, named=True)
        assert (top["genome"], top["contig"], top["start"], top["end"], top["rank"]) == \
            ("ecoli", "NC_000913.3", start, start + 1000, 1)
        assert top["score"] == pytest.approx(1.0, abs=1e-3)
        assert hits["score"].is_sorted(descending=True) and hits.height == 5


def test_sequence_queries_are_embedded_like_windows(index, ecoli_sequence):
    seq = ecoli_sequence[3000:4000]
    hits = index.search({"mine": seq.lower()}, k=3)
    assert hits.columns == ["query", "rank", "genome", "contig", "start", "end", "score"]
    assert hits.row(0, named=True)["start"] == 3000 and hits["query"].to_list() == ["mine"] * 3


def test_bad_queries_are_refused(index):
    with pytest.raises(GenembedError, match="query 'q': characters that are not IUPAC nucleotides: 'XZ'"):
        index.search({"q": b"ACGTXZ"}, 3)
    with pytest.raises(GenembedError, match="query 'tiny': 4 bp is shorter than one 6-mer token"):
        index.search({"tiny": b"ACGT"}, 3)
    assert index.search({"iupac": b"acgtrynacgtacgtwsacgt"}, 3).height == 3  # ambiguity codes, lower case
    with pytest.raises(GenembedError, match="not in this index"):
        index.search_region("yeast:chrI:0-100")
    with pytest.raises(GenembedError, match="GENOME:CONTIG:START-END"):
        Region.parse("NC_000913.3:1-100")
    with pytest.raises(GenembedError, match="tokens per window but the model takes at most 512"):
        index.search({"long": b"ACGTAC" * 600}, 3)


def test_hits_print_as_tsv_json_and_bed(index):
    hits = index.search_region("ecoli:NC_000913.3:10000-11000", LocusSearch(k=2))
    tsv = format_hits(hits, "tsv").splitlines()
    assert tsv[0] == ("query\tquery_start\tquery_end\tgenome\tcontig\tstart\tend\tstrand\tscore\twindows\tevalue\trank"
                      "\tverified\taln_score\tbitscore\tidentity\taligned\tmatches\tmismatches\tgap_opens\tgaps\tcigar")
    assert tsv[1].startswith("ecoli:NC_000913.3:10000-11000\t0\t1000\tecoli\tNC_000913.3\t10000\t11000\t+\t")
    assert json.loads(format_hits(hits, "json"))[0]["start"] == 10000
    bed = format_hits(hits, "bed").splitlines()[0].split("\t")
    assert bed[:3] == ["NC_000913.3", "10000", "11000"] and 990 <= int(bed[4]) <= 1000


def test_cli_query_by_region_fasta_and_sequence(tmp_path, built_index, ecoli_sequence):
    base = [sys.executable, "-m", "genembed.run.cli", "query", "--index", str(built_index["dir"])]
    out = subprocess.run(base + ["--region", "ecoli:NC_000913.3:20000-21000", "-k", "3"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 4 and out[1].split("\t")[5:7] == ["20000", "21000"]
    fasta = tmp_path / "q.fa"
    fasta.write_text(f">a\n{ecoli_sequence[5000:6000].decode()}\n>b\n{ecoli_sequence[9000:10000].decode()}\n")
    out = subprocess.run(base + ["--fasta", str(fasta), "-k", "1", "--format", "json", "--out", str(tmp_path / "h.json")],
                         capture_output=True, text=True, check=True)
    hits = json.loads((tmp_path / "h.json").read_text())
    assert [(h["query"], h["start"]) for h in hits] == [("a", 5000), ("b", 9000)]
    bad = subprocess.run(base + ["--sequence", "ACGU"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == ["genembed: error: query 'query': characters that are not IUPAC nucleotides: 'U'"]


def test_an_index_of_both_strands_finds_a_window_from_its_reverse_complement(tmp_path, prepared_slice, tiny_bert,
                                                                              ecoli_sequence):
    from genembed.search.build import build_index
    from genembed.run.pipeline import embed_genome
    from genembed.encode.tokenize import reverse_complement

    plan = kmer_plan(tiny_bert, 1000, 60, strands="average", precision="fp32")
    genome = embed_genome(plan, prepared_slice, "ecoli", tmp_path / "results")[0]
    build_index([genome], tmp_path / "index", plan)
    index = Index.open(tmp_path / "index")
    assert index.manifest["settings"]["strands"] == "average"
    hits = index.search({"minus": reverse_complement(ecoli_sequence[7000:8000])}, k=2)
    assert hits.row(0, named=True)["start"] == 7000 and hits["score"][0] == pytest.approx(1.0, abs=1e-3)


def test_hits_can_be_kept_to_some_genomes_and_leave_out_the_query_region(tmp_path, built_index, prepared_slice):
    from genembed.run.cli import main
    from genembed.search.index import IndexSettings
    from genembed.search.build import build_index
    from genembed.data.layout import GenomeInputs

    # the same windows indexed as two genomes (their window tables relabelled)
    tables = []
    for i, (w, name) in enumerate(zip(built_index["windows"], ["eco_a", "eco_b"])):
        from genembed.data.windows import window_ids

        t = pl.read_parquet(w)
        t = t.with_columns(pl.lit(name).alias("genome"), pl.Series("window_id", window_ids(name, np.arange(t.height))))
        tables.append(tmp_path / f"w{i}.parquet")
        t.write_parquet(tables[-1])
    shards = []
    for i, (s, t) in enumerate(zip(built_index["shards"], tables)):
        shard = read_shard(s)
        shards.append(tmp_path / f"e{i}.h5")
        write_shard(shards[-1], shard.embeddings, pl.read_parquet(t)["window_id"].to_numpy(), shard.attrs)
    genomes = [GenomeInputs(name, prepared_slice, None, [t], [s]) for name, t, s in zip(["eco_a", "eco_b"], tables, shards)]
    for factory in ("Flat", "IVF8,Flat", "HNSW16"):
        out = tmp_path / factory.replace(",", "_")
        build_index(genomes, out, built_index["plan"], IndexSettings(factory=factory, nprobe=8))
        index = Index.open(out)
        assert pl.read_parquet(out / "windows.parquet")["window_id"].is_sorted()  # rows found by binary search
        hits = index.search_region("eco_a:NC_000913.3:5000-6000", LocusSearch(k=8, genomes=["eco_b"]))
        assert set(hits["genome"]) == {"eco_b"} and hits.height == 8
        own = index.search_region("eco_a:NC_000913.3:5000-6000", LocusSearch(k=3))
        assert own.row(0, named=True)["start"] == 5000
        apart = index.search_region("eco_a:NC_000913.3:5000-6000", LocusSearch(k=3, genomes=["eco_a"]), exclude_self=True)
        assert apart.height == 3 and apart["rank"].to_list() == [1, 2, 3]
        assert not ((apart["start"] < 6000) & (apart["end"] > 5000)).any()
    with pytest.raises(GenembedError, match="genome yeast is not in this index"):
        index.search_region("eco_a:NC_000913.3:5000-6000", LocusSearch(genomes=["yeast"]))
    assert main(["query", "--index", str(tmp_path / "Flat"), "--region", "eco_a:NC_000913.3:5000-6000",
                 "--genome", "eco_b", "--exclude-self", "--format", "parquet", "--out", str(tmp_path / "h.parquet")]) == 0
    table = pl.read_parquet(tmp_path / "h.parquet")
    assert table.columns == LOCUS_COLUMNS
    assert set(table["genome"]) == {"eco_b"} and table.height == 10


def test_queries_made_otherwise_than_the_index_are_refused_saying_what_differs(tmp_path, built_index, index):
    import h5py

    hits = index.search_shard(built_index["shards"][0], k=1)
    assert hits.height == 120 and (hits["score"] > 0.99).all()
    other = tmp_path / "other.h5"
    shutil.copy(built_index["shards"][0], other)
    with h5py.File(other, "r+") as f:
        f.attrs["pooling"] = "cls"
        f.attrs["layer"] = -2
    with pytest.raises(GenembedError, match=r"pooling 'cls' \(index: 'mean'\); layer -2 \(index: -1\)"):
        index.search_shard(other)
    changed = tmp_path / "model"
    shutil.copytree(built_index["plan"].folder, changed)
    weights = changed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(GenembedError, match="model files differ from those the index was built with"):
        Index.open(built_index["dir"], model=str(changed)).search({"q": b"ACGTACGTACGT"})


def test_queries_use_the_traced_encoder_the_index_keeps_and_agree_with_the_model(built_index, ecoli_sequence):
    from genembed.search.export import QUERY_INFO, QUERY_MODEL

    assert (built_index["dir"] / QUERY_MODEL).is_file() and (built_index["dir"] / QUERY_INFO).is_file()
    traced = Index.open(built_index["dir"])
    direct = Index.open(built_index["dir"], model=built_index["plan"].folder)
    seqs = {f"q{i}": ecoli_sequence[i * 7000 : i * 7000 + 600 + 50 * i] for i in range(6)}
    a, b = traced.embed(list(seqs.values())), direct.embed(list(seqs.values()))
    assert traced.encoder.embedder.tokenizer is None and direct.encoder.embedder.tokenizer is not None  # two different paths
    assert ((a * b).sum(1) >= 0.9999).all()
    assert traced.search(seqs, k=3)["start"].to_list() == direct.search(seqs, k=3)["start"].to_list()
    # a cold query process never imports transformers
    code = ("import sys; from genembed.run.cli import main; "
            f"main(['query', '--index', {str(built_index['dir'])!r}, '--sequence', {ecoli_sequence[:800].decode()!r}]); "
            "print('transformers' in sys.modules, file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stderr.strip().splitlines()[-1] == "False" and res.stdout.splitlines()[1].split("\t")[5] == "0"


def test_pq_hits_are_rescored_exactly_from_the_stored_embeddings(tmp_path, built_index):
    from genembed.search.index import IndexSettings
    from genembed.search.build import build_index

    shard = read_shard(built_index["shards"][1])
    queries = {str(i): v for i, v in zip(shard.window_id[:20], shard.embeddings[:20])}
    exact = Index.open(built_index["dir"]).search_vectors(queries, k=5)
    found = {}
    for rerank in (1, 40):  # 40 x 5 candidates: every window, so re-scoring gives the exact answer
        out = tmp_path / f"pq{rerank}"
        build_index([built_index["genome"]], out, built_index["plan"], IndexSettings(factory="PQ4x4", rerank=rerank, train_size=200))
        found[rerank] = Index.open(out).search_vectors(queries, k=5)
    assert found[40].select("query", "start").rows() == exact.select("query", "start").rows()
    np.testing.assert_allclose(found[40]["score"].to_numpy(), exact["score"].to_numpy(), atol=1e-5)
    assert not np.allclose(found[1]["score"].to_numpy(), exact["score"].to_numpy(), atol=1e-3)  # 4 coarse codes
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "pq40", moved)  # the folder is self-contained: it re-scores from its vectors.npy
    again = Index.open(moved).search_vectors(queries, k=5)
    assert again.select("query", "start").rows() == exact.select("query", "start").rows()
    assert (tmp_path / "pq1/vectors.npy").is_file()  # kept by every index: region queries and E-values read it
    (moved / "vectors.npy").unlink()
    with pytest.raises(GenembedError, match=r"vectors.npy: missing \(the index.s stored vectors"):
        Index.open(moved).search_vectors(queries, k=5)
