"""The ``genembed`` command line: the same library calls the workflow scripts make."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from genembed import __version__
from genembed.reports.compare import DISTANCES
from genembed.encode.embed import POOLINGS, PRECISIONS, STRANDS, EmbedSettings
from genembed.errors import GenembedError, one_line
from genembed.reports.evaluate import EvalSettings
from genembed.search.index import TYPES, IndexSettings
from genembed.data.windows import WindowPlan
from genembed.reports.clusters import ClusterSettings
from genembed.reports.promoters import PromoterSettings
from genembed.encode.tokenize import TokenizerSpec
from genembed.encode.tune import TuneConfig

# One source of defaults: the settings dataclasses (config/config.yaml and the CLI read them)
EMBED, EVAL, INDEX, WINDOWS = EmbedSettings(), EvalSettings(), IndexSettings(), WindowPlan()
CLUSTERS, PROMOTERS, TOKENIZER, TUNE = ClusterSettings(), PromoterSettings(), TokenizerSpec(), TuneConfig()


def _prepared(fastas: list[str], workdir: Path) -> list[Path]:
    """Prepared (bgzip + faidx) copies of FASTA files, made in ``workdir`` where needed."""
    from genembed.data.genome import prepare_fasta

    out = []
    for i, fasta in enumerate(fastas):
        path = Path(fasta)
        if Path(f"{path}.fai").is_file() and (path.suffix != ".gz" or Path(f"{path}.gzi").is_file()):
            out.append(path)
        else:
            name = path.name if path.name.endswith(".gz") else f"{path.name}.gz"
            dst = workdir / str(i) / name  # keeps the file name for the model card
            prepare_fasta(path, dst)
            out.append(dst)
    return out


def _share_or_none(text: str) -> float | None:
    """A share from 0 to 1, or none."""
    if text.lower() in ("none", "null"):
        return None
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1 (or none), not {text}")
    return value


def _from_args(cls, args: argparse.Namespace):
    """A settings dataclass from the options of the same names (the others keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def cmd_tune(args: argparse.Namespace) -> None:
    from genembed.encode.tune import tune

    tok = TokenizerSpec(args.tokenizer, args.k, args.overlap)
    if args.kmer_projection and not args.kmer_channels:
        raise GenembedError("tune --kmer-projection: give the branch's width with --kmer-channels")
    with tempfile.TemporaryDirectory() as tmp:
        if args.kmer_channels:
            from genembed.encode.kmerbranch import tune_branch

            if not args.model:
                raise GenembedError("tune --kmer-channels: give the genembed-conv encoder to fuse the branch into (--model)")
            stats = tune_branch(_prepared(args.fasta, Path(tmp)), args.model, args.out, _from_args(TuneConfig, args))
        else:
            stats = tune(lambda: _prepared(args.fasta, Path(tmp)), args.out, _from_args(TuneConfig, args), args.model, tok,
                         args.trust_remote_code, args.device, args.revision, args.checkpoint)
    if args.kmer_projection:
        print(f"saved {args.out}: a {args.kmer_size}-mer projection branch, weighted on {stats['projection_windows']:,}"
              f" training windows in {stats['seconds']} s")
        return
    print(f"saved {args.out}: {stats['steps']} steps in {stats['seconds']} s, loss {stats['first_loss']} ->"
          f" {stats['final_loss']} (chance {stats['chance_loss']}), in-batch top-1 {stats['final_in_batch_top1']}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a model's embeddings of sampled windows against k-mer counts and GC content."""
    from genembed.reports.evaluate import evaluate_model, wide

    names = args.genome or [_genome_name(f) for f in args.fasta]
    if len(names) != len(args.fasta):
        raise GenembedError(f"{len(args.fasta)} FASTA files but {len(names)} --genome names")
    if len(set(names)) != len(names):
        raise GenembedError(f"genome names must differ: {', '.join(names)} (name them with --genome)")
    plan = _plan(args)
    with tempfile.TemporaryDirectory() as tmp:
        fastas = dict(zip(names, _prepared(args.fasta, Path(tmp))))
        results, _ = evaluate_model(fastas, plan, args.out, EvalSettings(windows=args.windows, seed=args.seed,
                                                                             divergence_queries=args.divergence_queries,
                                                                             loci_depth=args.loci_depth),
                                    args.promoters_report)
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(wide(results))
    print(f"{Path(args.out) / 'evaluate.html'}")


def _plan(args: argparse.Namespace):
    """The run plan of a command's model, tokenizer, window and embedding options."""
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan

    return RunPlan.make(ModelSpec(args.model, args.revision, args.trust_remote_code),
                        TokenizerSpec(args.tokenizer, args.k, args.overlap),
                        {"size": args.window, "stride": args.stride, "max_n_fraction": args.max_n_fraction,
                         "shard_size": getattr(args, "shard_size", WINDOWS.shard_size)},
                        _from_args(EmbedSettings, args))


def _genome_name(fasta: str) -> str:
    name = Path(fasta).name
    for suffix in (".gz", ".fa", ".fna", ".fasta", ".fas"):
        name = name.removesuffix(suffix)
    return name


def cmd_query(args: argparse.Namespace) -> None:
    """Loci (or, with ``--windows``, window hits) for sequences, a FASTA file (streamed in batches), a
    region, or the windows of an embedding shard."""
    from genembed.search.hits import LOCUS_ONLY, HitWriter, iter_fasta_queries
    from genembed.search.query import Index, LocusSearch, Region

    if args.exclude_self and not args.region:
        raise GenembedError("--exclude-self needs --region (a sequence has no region of its own)")
    if args.k < 1:
        raise GenembedError(f"-k must be at least 1, not {args.k}")
    if args.format in LOCUS_ONLY and (args.windows or args.embeddings):
        raise GenembedError(f"--format {args.format} writes loci: not with --windows or --embeddings")
    if args.out and Path(args.out).is_dir():
        raise GenembedError(f"--out {args.out}: a directory; name a file to write the hits to")
    if args.level != "window" and (args.windows or args.embeddings or args.format in LOCUS_ONLY or args.format == "bed"):
        raise GenembedError(f"--level {args.level} finds whole {args.level}s: not with --windows, --embeddings or "
                            f"--format {args.format} (tsv, json or parquet)")
    index = Index.open(args.index, args.model)
    genomes = args.genome or None
    settings = LocusSearch(args.k, genomes, args.strand, args.windows, not args.no_verify)

    def loci(hits, lengths: dict[str, int]):  # PAF rows also give the query's and the contig's lengths
        return index.with_lengths(hits, lengths) if args.format in LOCUS_ONLY else hits

    def search(batch: dict[str, bytes]):  # loci, or (--level) the nearest whole genomes or contigs
        if args.level != "window":
            return index.search_level(batch, args.level, args.k, genomes)
        return loci(index.search_loci(batch, settings), {name: len(seq) for name, seq in batch.items()})

    with HitWriter(args.format, args.out) as out:
        if args.embeddings:
            out.write(index.search_shard(args.embeddings, args.k, genomes))
        elif args.region and args.level != "window":
            region = Region.parse(args.region)
            out.write(search({str(region): index.fetch(region)}))
        elif args.region:
            region = Region.parse(args.region)
            hits = index.search_region(region, settings, args.exclude_self)
            out.write(loci(hits, {str(region): region.end - region.start}))
        else:
            records = iter([("query", args.sequence.strip().upper().encode())]) if args.sequence else \
                iter_fasta_queries(args.fasta)
            seen = skipped = 0
            for batch in _batches(records, args.batch_size):
                seen += len(batch)
                batch, bad = index.screen(batch, refuse_all=False)
                if bad and (args.strict or args.sequence):
                    where = f"{args.fasta}: " if args.fasta else ""
                    raise GenembedError(f"{where}query {bad[0]['query']!r}: {bad[0]['reason']}"
                                        + (" (leave out --strict to skip such records)" if args.fasta else ""))
                for b in bad:
                    print(f"genembed: warning: {args.fasta}: query {b['query']!r} skipped: {b['reason']}", file=sys.stderr)
                skipped += len(bad)
                if batch:
                    out.write(search(batch))
            if skipped:
                if skipped == seen:
                    raise GenembedError(f"{args.fasta}: none of its {seen} queries can be searched")
                print(f"genembed: {skipped} of {seen} queries skipped, {seen - skipped} answered", file=sys.stderr)
    index.close()


def _batches(records, size: int):
    """Query records in dicts of ``size``, with a progress bar on stderr when there are many."""
    from tqdm.auto import tqdm

    batch: dict[str, bytes] = {}
    with tqdm(desc="queries", unit=" queries", file=sys.stderr, disable=None, mininterval=1, delay=2) as bar:
        for name, seq in records:
            batch[name] = seq
            if len(batch) == size:
                yield batch
                bar.update(len(batch))
                batch = {}
        if batch:
            yield batch
            bar.update(len(batch))


def cmd_serve(args: argparse.Namespace) -> None:
    from genembed.search.serve import serve

    serve(args.index, args.host, args.port, args.model, args.workers)


def cmd_prepare(args: argparse.Namespace) -> None:
    from genembed.data.genome import prepare_fasta

    contigs = prepare_fasta(args.fasta, args.out)
    print(f"{args.out}: {len(contigs)} contigs, {sum(n for _, n in contigs):,} bp")


def cmd_embed(args: argparse.Namespace) -> None:
    """Window, tokenize and embed one genome into the results folder (what the workflow does per shard).

    A rerun keeps the shards already embedded with the same settings (resume after a kill)."""
    from genembed.data.io import folder_lock
    from genembed.run.pipeline import embed_genome

    plan = _plan(args)
    with folder_lock(args.out):
        genome, kept, n = embed_genome(plan, args.fasta, args.genome, args.out)
    for shard in kept:
        print(f"shard {shard.stem}: already embedded")
    print(f"{args.out}: genome {genome.name}, {len(genome.shards)} shards, {n} windows embedded now"
          f" (window {plan.windows.size} bp, stride {plan.windows.stride} bp)")


def _shard_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive number of windows nor auto")
    return value


def cmd_report(args: argparse.Namespace) -> None:
    """Clustering report, and the promoter report when some genome has an annotation or a BED."""
    from genembed.data.io import missing_folders, remove_empty
    from genembed.data.layout import PLAN, discover
    from genembed.encode.plan import RunPlan
    from genembed.reports.clusters import cluster_report
    from genembed.reports.promoters import run_promoter_report

    genomes = discover(args.embeddings)
    by_name = {g.name: g for g in genomes}
    for field, files in (("annotation", args.annotation), ("promoters", args.promoters)):
        for name, path in files:
            if name not in by_name:
                raise GenembedError(f"--{field} {name}={path}: no genome '{name}' under {args.embeddings}")
            setattr(by_name[name], field, Path(path))
    out = Path(args.out)
    made = missing_folders(out / "promoters")[:1] + missing_folders(out / "clusters")
    try:
        cluster_report(genomes, out / "clusters", ClusterSettings(method=args.method, k=args.k, seed=args.seed))
        print(f"{out / 'clusters/clusters.html'}")
        if any(g.annotation or g.promoters for g in genomes):
            plan = RunPlan.read(Path(args.embeddings) / PLAN)
            settings = PromoterSettings(track_step=args.track_step, operon_gap=args.operon_gap, seed=args.seed,
                                        stranded=args.stranded, call_precision=args.call_precision,
                                        negative_coding_share=args.negative_coding_share)
            run_promoter_report(genomes, out / "promoters", settings, plan)
            print(f"{out / 'promoters/promoters.html'}")
    finally:
        remove_empty(made)  # a failed report leaves no empty folders


def cmd_export(args: argparse.Namespace) -> None:
    """Per genome, a virtual HDF5 over its shards (``--vds DIR``), and/or all windows as AnnData."""
    from genembed.data.h5ad import export_h5ad
    from genembed.data.layout import discover
    from genembed.data.store import stitch

    genomes = discover(args.embeddings)
    if args.genome:
        unknown = sorted(set(args.genome) - {g.name for g in genomes})
        if unknown:
            raise GenembedError(f"{args.embeddings}: no genome {', '.join(map(repr, unknown))} (it has"
                                f" {', '.join(g.name for g in genomes)})")
        genomes = [g for g in genomes if g.name in set(args.genome)]
    if not (args.vds or args.h5ad):
        raise GenembedError("nothing to export: give --vds DIR and/or --h5ad FILE")
    if args.vds:
        for g in genomes:
            n = stitch(g.shards, Path(args.vds) / f"{g.name}.h5", g.windows, g.name)
            print(f"{Path(args.vds) / (g.name + '.h5')}: {n} windows (virtual, over {len(g.shards)} shards)")
    if args.h5ad:
        n = export_h5ad([w for g in genomes for w in g.windows], [s for g in genomes for s in g.shards], args.h5ad)
        print(f"{args.h5ad}: {n} windows")


def cmd_index(args: argparse.Namespace) -> None:
    from genembed.search.build import build_index
    from genembed.data.io import folder_lock
    from genembed.data.layout import PLAN, discover
    from genembed.encode.plan import RunPlan

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise GenembedError(f"--out {args.out}: a file; the index is a folder (name a new or existing folder)")
    genomes = discover(args.embeddings)
    plan = RunPlan.read(Path(args.embeddings) / PLAN)
    settings = IndexSettings(args.type, args.factory, nprobe=args.nprobe, ef_search=args.ef_search, rerank=args.rerank)
    with folder_lock(args.out):
        manifest = build_index(genomes, args.out, plan, settings)
    print(f"{args.out}: {manifest['index']['count']} vectors, dimension {manifest['index']['dim']},"
          f" {manifest['index']['factory']}")


def cmd_compare(args: argparse.Namespace) -> None:
    from genembed.reports.compare import bin_contigs, compare_genomes, read_truth
    from genembed.data.io import atomic_path
    from genembed.data.layout import discover

    genomes = discover(args.embeddings)
    if args.bins:  # contig binning: the contigs of a mixed set into bins, against TNF in the same run
        table, scores = bin_contigs(genomes, args.bins, args.min_windows, args.seed,
                                    read_truth(args.truth) if args.truth else None)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(args.out) / "contig_bins.tsv") as tmp:
            table.write_csv(tmp, separator="\t")
        for name, ari in scores.items():
            print(f"adjusted Rand index against {args.truth}: {name} {ari:.3f}")
        print(f"{args.out}: contig_bins.tsv ({table.height} contigs in {args.bins} bins)")
        return
    table = compare_genomes(genomes, args.out, distance=args.distance)
    names = table["genome"].to_list()
    for i, name in enumerate(names):
        others = [(table[n][i], n) for n in names if n != name]
        print(f"{name}: nearest {min(others)[1]} (distance {min(others)[0]:.4g})")
    print(f"{args.out}: distances.tsv, distances.parquet, tree.nwk, compare.html ({len(names)} genomes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genembed", description="Genome-scale DNA language-model embeddings, similarity search and reports.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--version", action="version", version=f"genembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="contrastive training: a new genembed encoder, or any model (--model) tuned")
    t.add_argument("--fasta", nargs="+", required=True, help="training genomes (plain, gzip or bgzip FASTA)")
    t.add_argument("--out", required=True, help="output model folder (Hugging Face format)")
    t.add_argument("--model", help="model folder or hub id to tune (default: a new genembed-conv encoder)")
    t.add_argument("--revision")
    t.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model")
    _tokenizer_args(t)
    t.add_argument("--steps", type=int, default=TUNE.steps)
    t.add_argument("--max-minutes", type=float, default=TUNE.max_minutes)
    t.add_argument("--batch-size", type=int, default=TUNE.batch_size, help="loci per step (two views each)")
    t.add_argument("--seq-bp", type=int, default=TUNE.seq_bp, help="view length (bp)")
    t.add_argument("--max-shift", type=int, help="largest shift between views (bp; default 4/5 of --seq-bp)")
    t.add_argument("--max-mutation", type=float, default=TUNE.max_mutation, help="largest substitution rate")
    t.add_argument("--mutation-warmup", type=float, default=TUNE.mutation_warmup,
                   help="share of the steps over which the largest mutation rate ramps up from 10%% (default 0: none)")
    t.add_argument("--hard-negatives", type=float, default=TUNE.hard_negatives,
                   help="share of loci drawn beside another of the same contig and GC content (default 0)")
    t.add_argument("--mutate-one", action="store_true",
                   help="mutate only one view of each locus, as a diverged query meets the genome's own windows")
    t.add_argument("--checkpoint", help="folder for the run's state: saved every 50 steps and at the end; resumed from")
    t.add_argument("--learning-rate", type=float, help="peak AdamW rate (default: 2e-3 for a new encoder, 5e-5 with --model)")
    t.add_argument("--temperature", type=float, default=TUNE.temperature)
    t.add_argument("--hidden-size", type=int, default=TUNE.hidden_size, help="new encoder only")
    t.add_argument("--layers", type=int, default=TUNE.layers, help="new encoder only")
    t.add_argument("--kmer-size", type=int, default=TUNE.kmer_size,
                   help="new encoder only: a k-mer branch over centred k-mers (odd k, e.g. 5; default 0: none);"
                        " with --kmer-channels, the fused branch's k")
    t.add_argument("--kmer-channels", type=int, default=TUNE.kmer_channels,
                   help="train only a k-mer branch of this many channels, fused beside --model's (a genembed-conv"
                        " encoder; frozen): see genembed.encode.kmerbranch")
    t.add_argument("--kmer-share", type=float, default=TUNE.kmer_share,
                   help="the fused k-mer block's share of a window vector's squared length (default 0.5)")
    t.add_argument("--kmer-projection", action="store_true",
                   help="with --kmer-channels: the branch is a fixed random projection of the canonical k-mer"
                        " frequencies, IDF-weighted, not trained (genembed.encode.kmerbranch.projection_table)")
    t.add_argument("--device", default=EMBED.device)
    t.add_argument("--seed", type=int, default=TUNE.seed)
    t.set_defaults(func=cmd_tune)

    v = sub.add_parser("evaluate", help="score a model's embeddings against k-mer counts (forward 4-mers, canonical 4- and 6-mers) and GC on sampled windows")
    v.add_argument("--fasta", nargs="+", required=True, help="genomes (plain, gzip or bgzip FASTA)")
    v.add_argument("--genome", action="append", help="genome names, in --fasta order (default: file names)")
    v.add_argument("--out", required=True, help="folder for evaluate.html, evaluate.tsv and comparison.tsv")
    _run_args(v)
    v.add_argument("--windows", type=int, default=EVAL.windows, help="anchor windows sampled, shared among genomes")
    v.add_argument("--divergence-queries", type=int, default=EVAL.divergence_queries,
                   help="2-kb queries per mutation rate of the divergence curve (0: none)")
    v.add_argument("--loci-depth", type=int, default=EVAL.loci_depth,
                   help="hits per query piece the curve's locus search chains (genembed query: 200)")
    v.add_argument("--promoters-report", help="a promoter report folder: its metrics join the table")
    v.add_argument("--seed", type=int, default=EVAL.seed)
    v.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("prepare", help="validate a FASTA (plain, gzip, bgzip) into indexed bgzip")
    p.add_argument("fasta")
    p.add_argument("out", help="output .fa.gz (with .fai and .gzi beside it)")
    p.set_defaults(func=cmd_prepare)

    e = sub.add_parser("embed", help="window, tokenize and embed one genome into a results folder (as the workflow's results/)")
    e.add_argument("--fasta", required=True)
    e.add_argument("--genome", required=True, help="genome id (letters, digits, . _ -)")
    e.add_argument("--out", required=True, help="results folder shared by the genomes of one index")
    _run_args(e)
    e.add_argument("--shard-size", type=_shard_size, default=WINDOWS.shard_size,
                   help="windows per shard, or auto: at most about 500 shards, multiples of 2,500 windows")
    e.set_defaults(func=cmd_embed)

    i = sub.add_parser("index", help="FAISS index over the genomes 'genembed embed' put in a results folder")
    i.add_argument("--embeddings", required=True, help="results folder of 'genembed embed' (its --out)")
    i.add_argument("--out", required=True)
    i.add_argument("--type", choices=TYPES, default=INDEX.type,
                   help="auto: exact below 100,000 windows, HNSW below 5M, OPQ + IVF-PQ above")
    i.add_argument("--factory", help="any FAISS factory string (instead of --type)")
    i.add_argument("--nprobe", type=int, default=INDEX.nprobe, help="IVF lists searched per query")
    i.add_argument("--ef-search", type=int, default=INDEX.ef_search, help="HNSW search breadth")
    i.add_argument("--rerank", type=int, default=INDEX.rerank,
                   help="PQ indexes: fetch this many times the hits and re-score them exactly from the stored embeddings")
    i.set_defaults(func=cmd_index)

    r = sub.add_parser("report", help="clustering and promoter-prediction reports over 'genembed embed' folders")
    r.add_argument("--embeddings", required=True, help="results folder of 'genembed embed' (its --out)")
    r.add_argument("--out", required=True, help="reports go to OUT/clusters and OUT/promoters")
    r.add_argument("--annotation", type=_named_path, action="append", default=[], metavar="GENOME=GFF",
                   help="GFF3 or GTF of a genome (repeat for several)")
    r.add_argument("--promoters", type=_named_path, action="append", default=[], metavar="GENOME=BED",
                   help="BED of known promoters or TSSs of a genome; takes precedence over its annotation")
    r.add_argument("--method", choices=["kmeans", "hdbscan"], default=CLUSTERS.method)
    r.add_argument("--k", type=_size, default=CLUSTERS.k, help="k-means clusters, or auto: the best silhouette (default)")
    r.add_argument("--operon-gap", type=int, default=PROMOTERS.operon_gap,
                   help="bacteria: only the first gene of same-strand runs with gaps up to this many bp gets a promoter (0: every gene)")
    r.add_argument("--track-step", type=int, default=PROMOTERS.track_step,
                   help="bp between the embedding probe's track values (a dense scan with the shards' model); 0 or"
                        " at/above the stride: one value per window")
    r.add_argument("--stranded", action=argparse.BooleanOptionalAction, default=PROMOTERS.stranded,
                   help="also the supervised, stranded promoter model (+/- bigWigs, narrowPeak calls)")
    r.add_argument("--call-precision", type=float, default=PROMOTERS.call_precision,
                   help="stranded calls: the threshold reaching this precision on validation examples (lower: more calls)")
    r.add_argument("--negative-coding-share", type=_share_or_none, default=PROMOTERS.negative_coding_share,
                   help="stranded model: share of its training negatives drawn from coding bins (in a CDS), the rest"
                        " from the others; 'none': drawn as the genome has them")
    r.add_argument("--seed", type=int, default=CLUSTERS.seed)
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="genome vectors (mean window vector): distance matrix and UPGMA tree")
    c.add_argument("--embeddings", required=True, help="results folder of 'genembed embed' or the workflow's results/")
    c.add_argument("--out", required=True, help="folder for distances.tsv, distances.parquet, tree.nwk and compare.html")
    c.add_argument("--distance", choices=DISTANCES, default="auto",
                   help="best-hits: window sets by their best hits (alignment-free ANI of the embeddings); mean: the "
                        "genomes' mean vectors (any number of genomes); auto: best hits up to 500,000 windows in all")
    c.add_argument("--bins", type=int, default=0, help="bin the contigs instead: k-means into this many bins (contig_bins.tsv)")
    c.add_argument("--truth", help="with --bins: TSV of contig and source; prints the adjusted Rand index (and TNF's)")
    c.add_argument("--min-windows", type=int, default=4, help="with --bins: contigs with fewer windows are left out")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_compare)

    x = sub.add_parser("export", help="virtual HDF5 per genome over its shards, or AnnData (.h5ad) for scanpy")
    x.add_argument("--embeddings", required=True, help="results folder of 'genembed embed' (its --out)")
    x.add_argument("--vds", help="folder for one {genome}.h5 per genome (virtual datasets, nothing copied)")
    x.add_argument("--h5ad", help="AnnData file of every window: obs = window table, X = embeddings")
    x.add_argument("--genome", action="append", help="only this genome (repeat for several)")
    x.set_defaults(func=cmd_export)

    q = sub.add_parser("query", help="find the windows most similar to sequences or a genome region")
    q.add_argument("--index", required=True, help="index folder (results/index)")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--sequence", help="a DNA sequence")
    what.add_argument("--fasta", help="a FASTA file of query sequences (plain or gzip)")
    what.add_argument("--region", help="GENOME:CONTIG:START-END, 0-based half-open as in the hit tables")
    what.add_argument("--embeddings", help="an HDF5 embedding shard: every window of it is a query")
    q.add_argument("-k", type=int, default=10, help="loci (with --windows: hits per window) per query (default 10)")
    q.add_argument("--strand", choices=["both", "forward"], default="both",
                   help="both: the query and its reverse complement (default); forward: as given")
    q.add_argument("--windows", action="store_true", help="one row per window hit instead of per chained locus")
    q.add_argument("--level", choices=["window", "genome", "contig"], default="window",
                   help="genome / contig: the nearest whole genomes or contigs to each query (mean vectors), not loci")
    q.add_argument("--batch-size", type=int, default=256, help="FASTA queries searched together")
    q.add_argument("--genome", action="append", help="only hits in this genome (repeat for several)")
    q.add_argument("--exclude-self", action="store_true", help="with --region: drop hits overlapping the region")
    q.add_argument("--model", help="model folder to embed queries with (refused unless it is the index's model)")
    q.add_argument("--format", choices=["tsv", "json", "bed", "paf", "m8", "parquet"], default="tsv",
                   help="paf (minimap2) and m8 (BLAST -outfmt 6): loci only")
    q.add_argument("--out", help="write here instead of standard output")
    q.add_argument("--no-verify", action="store_true",
                   help="rank the embedding's candidate loci without aligning them (faster, no alignment columns)")
    q.add_argument("--strict", action="store_true",
                   help="refuse a FASTA with any record that cannot be searched (default: skip it with a warning)")
    q.set_defaults(func=cmd_query)

    v = sub.add_parser("serve", help="a query service (JSON API and web page) over an index")
    v.add_argument("--index", required=True, help="index folder (results/index)")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--workers", type=int, default=1,
                   help="processes answering requests side by side, each loading the index (default 1)")
    v.add_argument("--model", help="model folder to embed queries with (refused unless it is the index's model)")
    v.set_defaults(func=cmd_serve)
    return parser


def _size(text: str) -> int | str:
    if text == "auto":
        return text
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive or auto, not {text}")
    return value


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected GENOME=PATH, not {text!r}")
    return name, path


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", choices=["hf", "kmer"], default=TOKENIZER.kind,
                   help="hf: the model's own; kmer: vectorised k-mers over its vocabulary")
    p.add_argument("--k", type=int, default=TOKENIZER.k, help="k of the kmer tokenizer")
    p.add_argument("--overlap", action="store_true", default=TOKENIZER.overlap, help="overlapping k-mers (DNABERT)")


def _run_args(p: argparse.ArgumentParser) -> None:
    """What a run plan is made of: the model, its tokenizer, the windows and the embed settings."""
    p.add_argument("--model", required=True, help="local model folder or hub id")
    p.add_argument("--revision")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model")
    _tokenizer_args(p)
    p.add_argument("--window", type=_size, default=WINDOWS.size, help="bp, or auto: the longest the model takes")
    p.add_argument("--stride", type=_size, default="auto", help="bp, or auto (the default): half the window")
    p.add_argument("--max-n-fraction", type=float, default=WINDOWS.max_n_fraction)
    p.add_argument("--pooling", choices=POOLINGS, default=EMBED.pooling)
    p.add_argument("--strands", choices=STRANDS, default=EMBED.strands,
                   help="average: mean of the window and its reverse complement")
    p.add_argument("--layer", type=int, default=EMBED.layer)
    p.add_argument("--token-budget", type=int, default=EMBED.token_budget)
    p.add_argument("--precision", choices=PRECISIONS, default=EMBED.precision)
    p.add_argument("--device", default=EMBED.device)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        args.func(args)
    except (GenembedError, OSError) as exc:  # OSError: what no check foresaw (a failing disk, a vanished file)
        print(f"genembed: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outputs are written atomically: an interrupted command leaves none half-written
        print("genembed: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
