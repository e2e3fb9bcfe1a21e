"""The Snakemake workflow, run for real through its CLI on a 200-kb E. coli slice."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from genembed.data.genome import read_fai
from genembed.data.windows import WindowSpec, shard_count
from helpers import REPO, dry_run_jobs, slice_fasta, snakemake, write_config

pytestmark = pytest.mark.workflow

@pytest.fixture(scope="module")
def run(tmp_path_factory, ecoli_slice):
    d = tmp_path_factory.mktemp("workflow")
    write_config(
        d, f"genome\tfasta\tannotation\necoli\t{ecoli_slice[0]}\t{ecoli_slice[1]}\n",
        model={"path": "unused-when-pretraining", "pretrain": {"enabled": True, "steps": 6, "hidden_size": 16,
                                                                "layers": 1, "seq_bp": 300, "batch_size": 8}},
        windows={"size": 500, "stride": 500, "shard_size": 120, "pack_bp": 0},
        clusters={"k": 4, "umap_sample": 300},
    )
    res = snakemake(d, "--cores", "2")
    return d, res


def test_lint_is_clean():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr


@pytest.mark.parametrize("pack_bp, rules", [
    (100_000_000, ("embed_pack", "take_from_pack", "add_pack", "promoter_pack_scores")),  # the default: E. coli is packed
    (0, ("prepare_genome", "add_to_index")),  # packing off: one job per genome and per shard (listed after the checkpoint)
])
def test_dry_run_of_the_bundled_example_plans_every_stage(tmp_path, pack_bp, rules):
    example = REPO / "resources/example"
    write_config(tmp_path, f"genome\tfasta\tannotation\necoli_k12\t{example / 'ecoli_k12_mg1655.fna.gz'}\t"
                           f"{example / 'ecoli_k12_mg1655.gff.gz'}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")}, windows={"pack_bp": pack_bp})
    res = snakemake(tmp_path, "-n", "--quiet", "rules")
    for rule in ("describe_model", "train_index", "merge_index", "cluster_report", "promoter_model", "promoter_report", *rules):
        assert rule in res.stdout


def test_whole_workflow_outputs_exist_and_agree(run, ecoli_slice):
    d, _ = run
    r = d / "results"
    fai = read_fai(r / "genomes/ecoli/genome.fa.gz.fai")
    n_shards = shard_count(fai, WindowSpec(500, 500, shard_size=120))
    assert n_shards == 4
    windows = sorted((r / "windows/ecoli").glob("*.parquet"))
    shards = sorted((r / "embeddings/ecoli").glob("[0-9]*.h5"))
    assert [p.stem for p in windows] == [p.stem for p in shards] == [f"{i:05d}" for i in range(4)]
    # one embedding job per shard
    assert len(list((d / "benchmarks/logs/embed/ecoli").glob("*.tsv"))) == 4
    parquet_ids = np.concatenate([pl.read_parquet(w)["window_id"].to_numpy() for w in windows])
    h5_ids = []
    for s in shards:
        with h5py.File(s) as f:
            assert f["embeddings"].dtype == np.float16 and f["embeddings"].shape[1] == 16
            assert f.attrs["pooling"] == "mean" and f.attrs["window_size"] == 500 and f.attrs["strands"] == "forward"
            h5_ids.append(f["window_id"][:])
    h5_ids = np.concatenate(h5_ids)
    with h5py.File(r / "embeddings/ecoli/all.h5") as f:  # the genome's virtual dataset over its shards
        assert f["embeddings"].is_virtual and np.array_equal(f["window_id"][:], h5_ids)
        assert np.array_equal(f["embeddings"][:], np.concatenate([h5py.File(s)["embeddings"][:] for s in shards]))
        assert f["sequences"].attrs["windows"] == len(h5_ids) and f["sequences/genome_vector"].shape == (f["embeddings"].shape[1],)
    index_ids = pl.read_parquet(r / "index/windows.parquet")["window_id"].to_numpy()
    assert len(parquet_ids) == 400
    assert np.array_equal(parquet_ids, h5_ids) and np.array_equal(np.sort(parquet_ids), np.sort(index_ids))
    manifest = json.loads((r / "index/manifest.json").read_text())
    assert manifest["index"]["count"] == 400 and manifest["index"]["dim"] == 16
    model = json.loads((r / "model/model.json").read_text())
    assert manifest["model"]["fingerprint"] == model["fingerprint"]
    assert (r / "model/pretrained/README.md").is_file()
    clusters = pl.read_csv(r / "reports/clusters/clusters.tsv", separator="\t")
    assert clusters["windows"].sum() == 400
    assert pl.read_csv(r / "reports/clusters/enrichment.tsv", separator="\t")["q_value"].is_between(0, 1).all()
    metrics = pl.read_csv(r / "reports/promoters/metrics.tsv", separator="\t")
    assert metrics["model"].to_list() == ["embeddings", "4-mer frequencies", "GC content"]
    bedgraph = (r / "reports/promoters/ecoli.bedgraph").read_text().splitlines()
    assert len(bedgraph) == 1 + len(range(0, 200_000 - 500 + 1, 500))  # no dense track by default: a value per window
    assert not list((r / "embeddings/ecoli").glob("track/*.h5"))  # nor track windows embedded
    evaluation = pl.read_csv(r / "reports/evaluate/evaluate.tsv", separator="\t")
    assert {"neighbour top-10", "mutated 5% top-1", "reverse complement top-1", "promoter ROC-AUC"} <= set(evaluation["measure"])
    assert set(evaluation["method"]) == {"embeddings", "4-mer", "canonical 4-mer", "canonical 6-mer", "GC"}
    assert (r / "reports/promoters/ecoli.bw").read_bytes()[:4] == b"\x26\xfc\x8f\x88"  # bigWig magic, little-endian
    assert (r / "reports/promoters/ecoli.promoters.bed").read_text().startswith("track name=")
    for html in ("reports/clusters/clusters.html", "reports/promoters/promoters.html", "reports/evaluate/evaluate.html"):
        assert (r / html).stat().st_size > 10_000
    for log in ("prepare_genome/ecoli.log", "index/merge.log", "cluster_report.log", "embed/ecoli/00000.log"):
        assert (d / "logs" / log).is_file()


def test_rerun_has_nothing_to_do_and_query_finds_the_window_itself(run):
    d, _ = run
    res = snakemake(d, "-n")
    assert "Nothing to be done" in res.stdout + res.stderr
    out = subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(d / "results/index"),
                          "--region", "ecoli:NC_000913.3:120000-120500", "-k", "3"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[1].split("\t")[3:7] == ["ecoli", "NC_000913.3", "120000", "120500"]


def test_report_is_built_from_registered_outputs(run):
    d, _ = run
    import zipfile

    snakemake(d, "--report", str(d / "report.zip"))
    names = {Path(n).name for n in zipfile.ZipFile(d / "report.zip").namelist()}
    assert {"clusters.html", "enrichment.png", "silhouette.png", "umap_genome.png", "exemplars.tsv",
            "promoters.html", "roc.png", "pr.png", "calibration.png", "comparison.tsv", "evaluate.html",
            "evaluate.tsv", "evaluate.png"} <= names


@pytest.mark.parametrize("sheet, message", [
    ("genome\tfasta\n../escape\tx.fa\n", "line 2: genome id '../escape': not a valid id"),
    ("genome\tfasta\na\tx.fa\na\ty.fa\n", "duplicate genome ids: a"),
])
def test_bad_genome_sheets_are_refused_before_anything_runs(tmp_path, sheet, message):
    write_config(tmp_path, sheet)
    res = snakemake(tmp_path, "-n", check=False)
    assert res.returncode != 0 and message in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"windows": {"size": "big"}}, "big"),
    ({"embed": {"pooling": "median"}}, "median"),
    ({"index": {"nprobe": 0}}, "nprobe"),
])
def test_config_with_wrong_types_is_refused_by_the_schema_before_anything_runs(tmp_path, ecoli_slice, overrides, message):
    write_config(tmp_path, f"genome\tfasta\neco\t{ecoli_slice[0]}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")}, **overrides)
    res = snakemake(tmp_path, "-n", check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "ValidationError" in out and message in out
    assert not (tmp_path / "results").exists()


def test_bad_fasta_fails_its_job_with_one_line_and_leaves_no_output(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">chr1\nACGTACGT\n>chr1\nACGT\n")
    write_config(tmp_path, f"genome\tfasta\nbad\t{bad}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")})
    res = snakemake(tmp_path, "--cores", "1", check=False)
    assert res.returncode != 0
    assert f"genembed: error: {bad}: line 3: duplicate contig name 'chr1'" in res.stdout + res.stderr
    assert not list((tmp_path / "results/genomes").rglob("*.fa.gz*")) if (tmp_path / "results/genomes").exists() else True
    assert "duplicate contig name 'chr1'" in (tmp_path / "logs/embed_pack/bad.log").read_text()  # packed
    assert not (tmp_path / "results/packs/bad").exists()


def test_genomes_without_annotation_get_index_and_clusters_but_no_promoter_report(tmp_path, ecoli_slice):
    write_config(tmp_path, f"genome\tfasta\nplain\t{ecoli_slice[0]}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")})
    res = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert "cluster_report" in res.stdout and "promoter_report" not in res.stdout


def test_a_genome_with_only_a_promoter_bed_gets_a_promoter_report(tmp_path, ecoli_slice):
    (tmp_path / "tss.bed").write_text("NC_000913.3\t189\t190\tthrL\t0\t+\n")
    write_config(tmp_path, f"genome\tfasta\tpromoters\nplain\t{ecoli_slice[0]}\t{tmp_path / 'tss.bed'}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")})
    res = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert "promoter_report" in res.stdout


def test_windows_longer_than_the_model_takes_stop_the_run_naming_both_numbers(tmp_path, ecoli_slice):
    write_config(tmp_path, f"genome\tfasta\neco\t{ecoli_slice[0]}\n",
                 model={"path": str(REPO / "resources/models/genembed-conv")},
                 windows={"size": 5000, "stride": 2500})
    res = snakemake(tmp_path, "--cores", "1", check=False)
    message = "windows.size 5000 bp does not fit"
    assert res.returncode != 0 and message in res.stdout + res.stderr
    assert "at most 4096 tokens, which hold 4096 bp" in (tmp_path / "logs/describe_model.log").read_text()
    assert not (tmp_path / "results/model/model.json").exists()
    assert not (tmp_path / "results/embeddings").exists()


def test_a_new_genome_runs_only_its_own_jobs_and_retrains_only_when_the_collection_outgrows_the_index(tmp_path):
    sheet = "genome\tfasta\n" + f"first\t{slice_fasta(tmp_path / 'first.fa', 'chrA', 0, 200_000)}\n"
    config = dict(model={"path": str(REPO / "resources/models/genembed-conv")},
                  windows={"size": 500, "stride": 500, "shard_size": 200, "pack_bp": 0},
                  index={"type": "ivf", "retrain_factor": 1.6, "nprobe": 4})
    write_config(tmp_path, sheet, **config)
    index = ["results/index"]
    snakemake(tmp_path, "--cores", "2", *index, "results/embeddings/first/all.h5")
    trained = tmp_path / "results/index_build/trained.faiss"
    kept = {p: p.stat().st_mtime_ns for p in [trained, *(tmp_path / "results").glob("*/first/*")]}
    assert json.loads((tmp_path / "results/index/manifest.json").read_text())["index"]["factory"] == "IVF16,Flat"

    # a second genome (200 windows; 600 <= 1.6 x 400): only its own jobs, the merge and the reports
    sheet += f"second\t{slice_fasta(tmp_path / 'second.fa', 'chrB', 1_000_000, 100_000)}\n"
    write_config(tmp_path, sheet, **config)
    jobs = dry_run_jobs(tmp_path)
    assert {rule for rule, _ in jobs} >= {"prepare_genome", "add_to_index", "merge_index"}
    assert "train_index" not in {rule for rule, _ in jobs}
    assert all(w.get("genome") in (None, "second") for _, w in jobs), jobs
    res = snakemake(tmp_path, "--cores", "2", *index)
    assert "retraining" not in res.stderr
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing of the first genome was redone
    manifest = json.loads((tmp_path / "results/index/manifest.json").read_text())
    assert manifest["index"]["count"] == 600 and manifest["index"]["trained_for"] == 400
    assert set(manifest["genomes"]) == {"first", "second"}

    # a third genome takes the collection to 1,000 windows > 1.6 x 400: the index is retrained, and the run says so
    sheet += f"third\t{slice_fasta(tmp_path / 'third.fa', 'chrC', 2_000_000, 200_000)}\n"
    write_config(tmp_path, sheet, **config)
    res = snakemake(tmp_path, "--cores", "2", *index)
    assert "retraining the index: the collection (1,000 windows) outgrew the index trained for 400" in res.stderr
    manifest = json.loads((tmp_path / "results/index/manifest.json").read_text())
    assert manifest["index"]["count"] == 1000 and manifest["index"]["trained_for"] == 1000
    lists = list((tmp_path / "results/index").glob("*.ivfdata"))  # IVF lists merged on disk, the old ones removed
    assert len(lists) == 1 and lists[0].stat().st_size == 1000 * (manifest["index"]["dim"] * 4 + 8)  # IVF,Flat: vectors and ids
    assert kept[trained] != trained.stat().st_mtime_ns
    embeddings = [p for p in kept if p.suffix == ".h5"]
    assert embeddings and all(p.stat().st_mtime_ns == kept[p] for p in embeddings)  # retraining re-embeds nothing
    out = subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(tmp_path / "results/index"),
                          "--region", "third:chrC:50000-50500", "-k", "1"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[1].split("\t")[3:7] == ["third", "chrC", "50000", "50500"]


def test_a_setting_no_shard_job_reads_does_not_redo_the_shards(small_workflow_run, tmp_path):
    """Rules pass their scripts only what they read: a pretraining setting (pretraining off) or a
    clustering one leaves windows, tokens, embeddings and the index alone; a promoter report setting
    leaves the stranded model and its scores alone."""
    extra = tmp_path / "extra.yaml"
    extra.write_text("model: {pretrain: {steps: 7, hidden_size: 32}}\nclusters: {k: 4}\n")
    rules = {rule for rule, _ in dry_run_jobs(small_workflow_run, "--configfile", str(extra))}
    assert rules == {"cluster_report", "all"}, rules
    extra.write_text("promoters: {bootstrap: 50, recall: 0.4}\n")  # the report's: the stranded model is not retrained
    rules = {rule for rule, _ in dry_run_jobs(small_workflow_run, "--configfile", str(extra))}
    assert rules == {"promoter_report", "evaluate_report", "all"}, rules  # evaluate's measures are not redone


def test_a_sharded_genomes_promoter_track_comes_from_its_shard_jobs_and_the_report_loads_no_model(small_workflow_run):
    """Every genome sharded (windows.pack_bp 0): each embedding job writes the track windows of its own
    span, a scoring job per shard the stranded model's probabilities there, and the promoter report
    reads them (one thread, no model: it never scans a genome, nor trains or runs the stranded model)."""
    from genembed.data.store import track_attrs

    parts = sorted((small_workflow_run / "results/embeddings/eco/track").glob("*.h5"))
    shards = sorted((small_workflow_run / "results/embeddings/eco").glob("[0-9]*.h5"))
    assert [p.name for p in parts] == [s.name for s in shards] and len(parts) == 2
    assert [track_attrs(p)["shard"] for p in parts] == [s.stem for s in shards]
    scores = sorted((small_workflow_run / "results/promoters/shard_scores/eco").glob("*.parquet"))
    assert [p.stem for p in scores] == [s.stem for s in shards]
    assert "trained in" in (small_workflow_run / "logs/promoter_model.log").read_text()
    log = (small_workflow_run / "logs/promoter_report.log").read_text()
    assert "genembed.encode.embed: model" not in log and "trained in" not in log and "dense scan" in (
        small_workflow_run / "results/reports/promoters/promoters.html").read_text()
    assert (small_workflow_run / "results/reports/promoters/eco.stranded.narrowPeak").is_file()


@pytest.mark.parametrize("case, sheet, message", [
    ("genome sheet without a fasta column", "genome\tpath\neco\t{fasta}\n", "genomes.tsv: no fasta column"),
    ("empty genome sheet", "genome\tfasta\n", "genomes.tsv: no genomes (the sheet has a header but no rows)"),
    ("garbage .fai beside the FASTA", "genome\tfasta\neco\t{garbage}\n", "in.fa.fai: not a samtools .fai index"),
    ("more fields than the header", "genome\tfasta\neco\t{fasta}\textra\n",
     "genomes.tsv: line 2: 3 tab-separated fields, but the header has 2"),
    ("genome id with a trailing space", "genome\tfasta\neco \t{fasta}\n",
     "genomes.tsv: line 2: genome id 'eco ': not a valid id"),
    ("relative FASTA path that is not there", "genome\tfasta\neco\tdata/eco.fa\n",
     "genomes.tsv: line 2: FASTA data/eco.fa not found (a relative path is read from the working directory"),
])
def test_a_bad_sheet_is_refused_naming_it_before_any_job(tmp_path, ecoli_slice, case, sheet, message):
    garbage = tmp_path / "in.fa"
    garbage.write_text(">c\nACGT\n")
    (tmp_path / "in.fa.fai").write_text("this is not\na samtools index\n")
    write_config(tmp_path, sheet.format(fasta=ecoli_slice[0], garbage=garbage))
    res = snakemake(tmp_path, "-n", check=False)
    assert res.returncode != 0 and message in res.stdout + res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and not (tmp_path / "results").exists()
