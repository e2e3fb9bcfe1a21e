import re

import numpy as np
import polars as pl
import pytest

from genembed.reports.clusters import ClusterSettings, cluster_report
from genembed.data.layout import GenomeInputs
from genembed.reports.inputs import genome_contigs
from genembed.reports.promoters import PromoterSettings, held_out, kmer_frequencies, promoter_report, split_of
from helpers import kmer_plan
from genembed.encode.scan import Scanner


@pytest.fixture(scope="module")
def inputs(built_index, prepared_slice, ecoli_slice):
    return [GenomeInputs("ecoli", prepared_slice, ecoli_slice[1], built_index["windows"], built_index["shards"])]


def _self_contained(html: str) -> None:
    # links in the page itself (the inline igv.js holds URL templates it never fetches here: the Chromium test
    # of the report checks that nothing is requested)
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", re.sub(r"<script>.*?</script>", "", html, flags=re.S))
    assert html.count("data:image/png;base64,") >= 2


def test_cluster_report_writes_html_table_plots_and_assignments(tmp_path, inputs):
    summary = cluster_report(inputs, tmp_path, ClusterSettings(k=4, umap_sample=150))
    assert summary["windows"].sum() == 200 and summary.height == 4
    assert {"cluster", "windows", "share", "mean_gc", "frac_upstream", "frac_CDS", "frac_tRNA", "frac_intergenic"} <= set(summary.columns)
    np.testing.assert_allclose(summary["share"].sum(), 1.0)
    fracs = summary.select(pl.sum_horizontal(pl.col("^frac_.*$")))
    np.testing.assert_allclose(fracs.to_series().to_numpy(), 1.0)
    tsv = pl.read_csv(tmp_path / "clusters.tsv", separator="\t")
    assert tsv["windows"].to_list() == summary["windows"].to_list()
    assignments = pl.read_parquet(tmp_path / "assignments.parquet")
    ids = np.concatenate([pl.read_parquet(w)["window_id"].to_numpy() for w in inputs[0].windows])
    assert np.array_equal(assignments["window_id"].to_numpy(), ids)
    for png in ("umap_cluster", "umap_genome", "umap_gc", "umap_class", "composition", "enrichment", "silhouette", "genomes"):
        assert (tmp_path / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "clusters.html").read_text()
    _self_contained(html)
    assert "k = 4, as configured" in html and "<table" in html
    assert "One genome: nothing to compare" in html  # the genome level needs two
    assert pl.read_csv(tmp_path / "genome_distances.tsv", separator="\t").columns == ["genome", inputs[0].name]


def test_k_is_chosen_by_silhouette_unless_configured(tmp_path, inputs):
    cluster_report(inputs, tmp_path, ClusterSettings(umap_sample=200, k_max=6))
    html = (tmp_path / "clusters.html").read_text()
    chosen = int(re.search(r"k = (\d+), chosen as the best silhouette", html).group(1))
    assert 2 <= chosen <= 5  # 200 sampled windows allow at most 200 // 39 = 5 clusters in FAISS
    assert pl.read_parquet(tmp_path / "assignments.parquet")["cluster"].n_unique() == chosen


def test_exemplars_are_the_windows_nearest_each_centroid_with_coordinates(tmp_path, inputs):
    cluster_report(inputs, tmp_path, ClusterSettings(k=3, umap_sample=150, exemplars=2))
    exemplars = pl.read_csv(tmp_path / "exemplars.tsv", separator="\t")
    assignments = pl.read_parquet(tmp_path / "assignments.parquet")
    assert exemplars.height == 6 and exemplars["cluster"].to_list() == [0, 0, 1, 1, 2, 2]
    best = assignments.sort("similarity", descending=True).group_by("cluster", maintain_order=True).head(2).sort("cluster")
    assert set(exemplars["window_id"]) == set(best["window_id"])
    assert (exemplars["end"] - exemplars["start"] == 1000).all() and set(exemplars["contig"]) == {"NC_000913.3"}


def test_enrichment_gives_log2_fold_and_corrected_hypergeometric_p_values():
    from math import comb

    from genembed.reports.clusters import enrichment_table

    # 40 windows: cluster 0 holds 8 of the 10 tRNA windows, cluster 1 the rest; unannotated windows are left out
    rows = [(0, "tRNA")] * 8 + [(0, "CDS")] * 2 + [(1, "tRNA")] * 2 + [(1, "CDS")] * 28 + [(1, "unannotated")] * 5
    table = pl.DataFrame(rows, schema={"cluster": pl.Int32, "annotation_class": pl.String}, orient="row").lazy()
    e = enrichment_table(table)
    assert e["class"].to_list() == ["tRNA", "CDS", "tRNA", "CDS"]
    row = e.row(0, named=True)
    assert (row["observed"], row["cluster_windows"], row["class_windows"]) == (8, 10, 10)
    assert row["expected"] == pytest.approx(10 * 10 / 40)
    assert row["log2_enrichment"] == pytest.approx(np.log2(8.5 / 3.0))
    p = sum(comb(10, i) * comb(30, 10 - i) for i in range(8, 11)) / comb(40, 10)  # P(X >= 8), X ~ hypergeom
    assert row["p_value"] == pytest.approx(p)
    assert row["q_value"] >= row["p_value"] and row["q_value"] < 0.05
    assert e.filter((pl.col("cluster") == 1) & (pl.col("class") == "tRNA"))["log2_enrichment"][0] < 0


def test_hdbscan_clusters_several_genomes_coloured_by_genome(tmp_path, inputs, model_org_inputs):
    genomes = inputs + model_org_inputs[:1]
    summary = cluster_report(genomes, tmp_path, ClusterSettings(method="hdbscan", umap_sample=400, min_cluster_size=15))
    assignments = pl.read_parquet(tmp_path / "assignments.parquet")
    assert set(assignments["genome"]) == {"ecoli", "C.elegans"}
    assert summary["windows"].sum() == assignments.height
    assert {"genome_ecoli", "genome_C.elegans"} <= set(summary.columns)
    html = (tmp_path / "clusters.html").read_text()
    assert "HDBSCAN" in html and 'alt="umap genome"' in html


def test_held_out_part_is_contiguous_and_shares_no_sequence_with_training(inputs):
    test = held_out(inputs[0], PromoterSettings(test_fraction=0.2))
    assert test == {"NC_000913.3": (160_000, 200_000)}
    table = pl.DataFrame({"contig": ["NC_000913.3"] * 3, "start": [158_000, 159_500, 160_000], "end": [159_000, 160_500, 161_000]})
    assert split_of(table, test).tolist() == [0, -1, 1]


def test_many_contig_genomes_hold_out_whole_contigs(tmp_path):
    from genembed.data.genome import prepare_fasta

    (tmp_path / "g.fa").write_text("".join(f">c{i}\n{'ACGT' * 250}\n" for i in range(10)))
    prepare_fasta(tmp_path / "g.fa", tmp_path / "g.fa.gz")
    test = held_out(GenomeInputs("g", tmp_path / "g.fa.gz", None), PromoterSettings(test_fraction=0.3))
    assert len(test) == 3 and all(v == (0, 1000) for v in test.values())


def test_kmer_frequencies_count_only_clean_kmers():
    f = kmer_frequencies([b"AAAC", b"ANAA"], 2)
    assert f[0, 0] == pytest.approx(2 / 3) and f[0, 1] == pytest.approx(1 / 3)
    assert f[1].sum() == pytest.approx(1.0) and f[1, 0] == 1.0


def test_promoter_report_compares_embeddings_with_kmer_and_gc_baselines_with_intervals(tmp_path, inputs):
    metrics = promoter_report(inputs, tmp_path, PromoterSettings(upstream=100, downstream=20, bootstrap=200), stride=1000)
    assert metrics["model"].to_list() == ["embeddings", "4-mer frequencies", "GC content"]
    assert metrics["test_windows"].to_list() == [40, 40, 40]
    for m in ("roc_auc", "pr_auc", "precision_at_recall", "brier"):
        assert ((metrics[m] >= 0) & (metrics[m] <= 1)).all()
        assert (metrics[f"{m}_lo"] <= metrics[m]).all() and (metrics[m] <= metrics[f"{m}_hi"]).all()
    comparison = pl.read_csv(tmp_path / "comparison.tsv", separator="\t")
    assert set(comparison["baseline"]) == {"4-mer frequencies", "GC content"}
    assert set(comparison["embeddings_are"]) <= {"better", "worse", "no clear difference"}
    html = (tmp_path / "promoters.html").read_text()
    _self_contained(html)
    for baseline in ("4-mer frequencies", "GC content"):  # one plain verdict per baseline
        assert re.search(rf"The embeddings (<b>beat</b>|do <b>not</b> beat) the {baseline} baseline", html)
    assert "95% CI" in html and "Platt scaling" in html and "block-bootstrap" in html


def test_promoter_tracks_are_sorted_bedgraph_bigwig_and_bed_with_the_genome_contig_sizes(tmp_path, model_org_inputs):
    import pyBigWig

    genome = model_org_inputs[1]  # A. thaliana: 7 contigs, FASTA order Chr1..Chr5, ChrM, ChrC
    promoter_report([genome], tmp_path, PromoterSettings(bootstrap=50), stride=1000)
    contigs = genome_contigs(genome.fasta)
    lines = (tmp_path / "A.thaliana.bedgraph").read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    bins = pl.DataFrame([line.split("\t") for line in lines[1:]], schema=["contig", "start", "end", "score"], orient="row") \
        .with_columns(pl.col("start", "end").cast(pl.Int64), pl.col("score").cast(pl.Float64))
    assert bins.equals(bins.sort("contig", "start"))  # sort -k1,1 -k2,2n order
    assert bins["contig"].unique(maintain_order=True).to_list() == ["Chr1", "Chr2", "Chr3", "Chr4", "Chr5", "ChrC", "ChrM"]
    last_end = bins.group_by("contig").agg(pl.col("end").max(), (pl.col("start").shift(-1) >= pl.col("end")).drop_nulls().all().alias("disjoint"))
    assert all(last_end["disjoint"]) and all(e <= contigs[c] for c, e, _ in last_end.iter_rows())
    bw = pyBigWig.open(str(tmp_path / "A.thaliana.bw"))
    assert bw.isBigWig() and bw.chroms() == contigs
    row = bins.row(len(bins) // 2, named=True)
    assert bw.values(row["contig"], row["start"], row["end"]) == pytest.approx([row["score"]] * (row["end"] - row["start"]), abs=1e-4)
    bw.close()
    bed = (tmp_path / "A.thaliana.promoters.bed").read_text().splitlines()
    assert bed[0].startswith("track name=")
    regions = [line.split("\t") for line in bed[1:]]
    assert regions and all(len(r) == 6 and 0 <= int(r[4]) <= 1000 and int(r[2]) <= contigs[r[0]] for r in regions)
    keys = [(r[0], int(r[1])) for r in regions]
    assert keys == sorted(keys)


def test_promoter_report_runs_on_eukaryotic_genomes_with_many_contigs_and_introns(tmp_path, model_org_inputs):
    metrics = promoter_report(model_org_inputs, tmp_path, PromoterSettings(bootstrap=100), stride=1000)
    assert metrics["test_windows"][0] > 300 and 0 < metrics["test_positive_fraction"][0] < 1
    html = (tmp_path / "promoters.html").read_text()
    assert "C.elegans: " in html and "A.thaliana: " in html
    for name in ("C.elegans", "A.thaliana"):
        assert (tmp_path / f"{name}.bw").stat().st_size > 1000


def test_reports_skip_shards_whose_windows_are_all_n(tmp_path, ecoli_sequence, ecoli_slice, tiny_bert):
    """A shard inside a long N gap has no windows; both reports still cover every other shard."""
    from genembed.run.pipeline import embed_genome

    part = ecoli_sequence[:20_000]
    (tmp_path / "g.fa").write_bytes(b">chr1\n" + part + b"N" * 10_000 + part + b"\n")
    gff = tmp_path / "g.gff"
    with open(ecoli_slice[1]) as src, open(gff, "w") as out:
        for line in src:
            f = line.rstrip("\n").split("\t")
            if len(f) == 9 and int(f[4]) <= 20_000:
                f[0] = "chr1"
                out.write("\t".join(f) + "\n")
                f[3], f[4] = str(int(f[3]) + 30_000), str(int(f[4]) + 30_000)
                out.write("\t".join(f) + "\n")
    g = embed_genome(kmer_plan(tiny_bert, 1000, 5), tmp_path / "g.fa", "gappy", tmp_path / "results")[0]
    g.annotation = gff
    assert [len(pl.read_parquet(w)) for w in g.windows] == [5, 5, 5, 5, 0, 0, 5, 5, 5, 5]
    summary = cluster_report([g], tmp_path / "clusters", ClusterSettings(k=3, umap_sample=40))
    assert summary["windows"].sum() == 40
    promoter_report([g], tmp_path / "promoters", PromoterSettings(bootstrap=20), stride=1000)
    assert len((tmp_path / "promoters/gappy.bedgraph").read_text().splitlines()) == 41


def test_promoter_track_from_a_dense_scan_has_a_value_every_track_step(tmp_path, model_org_inputs, tiny_bert):
    """With the run's model, the tracks re-embed windows every ``track_step`` bp: values every
    250 bp instead of one per 1-kb window."""
    import pyBigWig

    genome = model_org_inputs[0]
    scan = Scanner.for_plan(kmer_plan(tiny_bert, precision="fp32"))
    promoter_report([genome], tmp_path, PromoterSettings(bootstrap=20, track_step=250), stride=1000, scan=scan)
    lines = (tmp_path / "C.elegans.bedgraph").read_text().splitlines()[1:]
    bins = pl.DataFrame([line.split("\t") for line in lines], schema=["contig", "start", "end", "score"], orient="row") \
        .with_columns(pl.col("start", "end").cast(pl.Int64))
    assert (bins["end"] - bins["start"] == 250).all()
    first = bins.filter(pl.col("contig") == bins["contig"][0])
    assert first["start"].diff().drop_nulls().min() == 250  # consecutive values 250 bp apart
    contigs = genome_contigs(genome.fasta)
    assert bins.height > 0.8 * sum(n // 250 for n in contigs.values())
    bw = pyBigWig.open(str(tmp_path / "C.elegans.bw"))
    assert bw.chroms() == contigs
    bw.close()
    assert "dense scan" in (tmp_path / "promoters.html").read_text()


def test_stranded_promoter_outputs_are_plus_minus_bigwigs_and_a_narrowpeak_with_strand_peak_and_gene(tmp_path, model_org_inputs):
    import pyBigWig

    genome = model_org_inputs[0]  # C. elegans slices with their GFF3; calls down to 2% precision (few are more certain)
    promoter_report([genome], tmp_path, PromoterSettings(bootstrap=20, call_precision=0.02), stride=1000)
    contigs = genome_contigs(genome.fasta)
    stranded = pl.read_csv(tmp_path / "stranded.tsv", separator="\t")
    assert stranded["model"].to_list()[:3] == ["supervised CNN", "4-mer LR", "AT content"]
    assert "embedding probe (windows, strand-blind)" in stranded["model"].to_list()
    assert ((stranded["roc_auc"] > 0) & (stranded["roc_auc"] < 1)).all() and stranded["test_examples"][0] > 1000
    for name in ("plus", "minus"):
        bw = pyBigWig.open(str(tmp_path / f"C.elegans.{name}.bw"))
        contig = max(contigs, key=contigs.get)
        values = np.array(bw.values(contig, 0, contigs[contig]))
        assert bw.chroms() == contigs and np.isfinite(values).mean() > 0.99 and ((values >= 0) & (values <= 1)).all()
        bw.close()
    peaks = [line.split("\t") for line in (tmp_path / "C.elegans.stranded.narrowPeak").read_text().splitlines()[1:]]
    assert peaks and all(len(p) == 10 and p[5] in "+-" and 0 <= int(p[9]) < int(p[2]) - int(p[1]) for p in peaks)
    assert {p[5] for p in peaks} == {"+", "-"} and any(p[3] != "." for p in peaks)  # both strands; genes named
    html = (tmp_path / "promoters.html").read_text()
    assert re.search(r"At [\d.]+% recall of the held-out part's known transcription starts, \d+% of the predicted"
                     r" promoters there lie within 60 bp of a known start", html)
    assert re.search(r"Negatives are drawn 50% from coding bins \(inside a CDS\) and 50% from the rest \(intergenic, UTR,"
                     r" intron\); as the genomes come, \d+% of the negative bins are coding", html)


def test_stranded_calls_need_the_chosen_precision_on_validation_examples_or_none_are_made():
    from genembed.reports.stranded import _threshold

    truth = np.array([0, 0, 1, 0, 1, 1, 1, 0])
    prob = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert _threshold(truth, prob, 0.7)[0] == 0.5  # from 0.5 up: 3 of 4 right
    threshold, best = _threshold(truth, prob, 0.99)
    assert threshold == float("inf") and best == 0.75  # never 0.99: no calls
