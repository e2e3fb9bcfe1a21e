"""The ``genembed`` command line: the same library calls the workflow scripts make."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from . import __version__
from .errors import GenembedError
from .tune import TuneConfig

TUNE_DEFAULTS = TuneConfig()


def _prepared(fastas: list[str], workdir: Path) -> list[Path]:
    """Prepared (bgzip + faidx) copies of FASTA files, made in ``workdir`` where needed."""
    from .genome import prepare_fasta

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


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        hidden_size=args.hidden_size, layers=args.layers, heads=args.heads, seq_bp=args.seq_bp, batch_size=args.batch_size,
        steps=args.steps, max_minutes=args.max_minutes, learning_rate=args.learning_rate, seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        stats = pretrain(_prepared(args.fasta, Path(tmp)), args.out, cfg)
    print(f"saved {args.out}: {stats['steps']} steps, final loss {stats['final_loss']}")


def cmd_tune(args: argparse.Namespace) -> None:
    from .tokenize import TokenizerSpec
    from .tune import TuneConfig, tune

    cfg = TuneConfig(seq_bp=args.seq_bp, max_shift=args.max_shift, max_mutation=args.max_mutation,
                     batch_size=args.batch_size, steps=args.steps, max_minutes=args.max_minutes,
                     learning_rate=args.learning_rate, temperature=args.temperature, seed=args.seed,
                     hidden_size=args.hidden_size, layers=args.layers)
    tok = TokenizerSpec(args.tokenizer, args.k, args.overlap)
    with tempfile.TemporaryDirectory() as tmp:
        stats = tune(_prepared(args.fasta, Path(tmp)), args.out, cfg, args.model, tok, args.trust_remote_code,
                     args.device, args.revision)
    print(f"saved {args.out}: {stats['steps']} steps in {stats['seconds']} s, loss {stats['first_loss']} ->"
          f" {stats['final_loss']} (chance {stats['chance_loss']}), in-batch top-1 {stats['final_in_batch_top1']}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Score a model's embeddings of sampled windows against 4-mer counts and GC content."""
    from .embed import EmbedSettings
    from .evaluate import EvalSettings, evaluate_model, wide
    from .models import ModelSpec
    from .plan import plan_run
    from .tokenize import TokenizerSpec

    names = args.genome or [_genome_name(f) for f in args.fasta]
    if len(names) != len(args.fasta):
        raise GenembedError(f"{len(args.fasta)} FASTA files but {len(names)} --genome names")
    if len(set(names)) != len(names):
        raise GenembedError(f"genome names must differ: {', '.join(names)} (name them with --genome)")
    spec = ModelSpec(args.model, args.revision, args.trust_remote_code)
    tok = TokenizerSpec(args.tokenizer, args.k, args.overlap)
    plan = plan_run(spec, tok, {"size": args.window, "stride": args.stride})
    size, stride = int(plan["windows"]["size"]), int(plan["windows"]["stride"])
    settings = EmbedSettings(args.pooling, args.layer, args.token_budget, args.precision, args.device, args.strands)
    with tempfile.TemporaryDirectory() as tmp:
        fastas = dict(zip(names, _prepared(args.fasta, Path(tmp))))
        results, _ = evaluate_model(fastas, ModelSpec(plan["folder"], args.revision, args.trust_remote_code), tok,
                                    settings, size, stride, args.out, EvalSettings(windows=args.windows, seed=args.seed),
                                    args.max_n_fraction, args.promoters_report)
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(wide(results))
    print(f"{Path(args.out) / 'evaluate.html'}")


def _genome_name(fasta: str) -> str:
    name = Path(fasta).name
    for suffix in (".gz", ".fa", ".fna", ".fasta", ".fas"):
        name = name.removesuffix(suffix)
    return name


def cmd_query(args: argparse.Namespace) -> None:
    from .query import Index, Region, read_fasta_queries, write_hits

    if args.format == "parquet" and not args.out:
        raise GenembedError("--format parquet needs --out FILE")
    index = Index.open(args.index, args.model)
    genomes = args.genome or None
    if args.exclude_self and not args.region:
        raise GenembedError("--exclude-self needs --region (a sequence has no region of its own)")
    if args.sequence:
        hits = index.search({"query": args.sequence.strip().upper().encode()}, args.k, genomes)
    elif args.fasta:
        hits = index.search(read_fasta_queries(args.fasta), args.k, genomes)
    elif args.embeddings:
        hits = index.search_shard(args.embeddings, args.k, genomes)
    else:
        hits = index.search_region(Region.parse(args.region), args.k, genomes, args.exclude_self)
    text = write_hits(hits, args.format, args.out)
    if text is not None:
        sys.stdout.write(text)


def cmd_prepare(args: argparse.Namespace) -> None:
    from .genome import prepare_fasta

    contigs = prepare_fasta(args.fasta, args.out)
    print(f"{args.out}: {len(contigs)} contigs, {sum(n for _, n in contigs):,} bp")


def cmd_embed(args: argparse.Namespace) -> None:
    """Window, tokenize and embed one genome into shards (what the workflow does per shard).

    A rerun keeps the shards already embedded with the same settings (resume after a kill)."""
    from .embed import EmbedSettings, Embedder, ShardFiles, embed_shards, shard_attrs
    from .genome import prepare_fasta
    from .models import ModelSpec
    from .plan import plan_run
    from .store import is_complete
    from .tokenize import TokenizerSpec, make_tokenizer, token_fit, tokenize_shard
    from .windows import WindowSpec, shard_count, write_shard_windows

    out = Path(args.out)
    fasta = out / "genome.fa.gz"
    tok_spec = TokenizerSpec(args.tokenizer, args.k, args.overlap)
    plan = plan_run(ModelSpec(args.model, args.revision, args.trust_remote_code), tok_spec,
                    {"size": args.window, "stride": args.stride, "max_n_fraction": args.max_n_fraction,
                     "shard_size": args.shard_size})
    settings = EmbedSettings(args.pooling, args.layer, args.token_budget, args.precision, args.device, args.strands)
    embedder = Embedder(ModelSpec(plan["folder"], args.revision, args.trust_remote_code), settings)
    existed = fasta.is_file()
    contigs = prepare_fasta(args.fasta, fasta)
    spec = WindowSpec.from_config(plan["windows"], contigs)
    try:
        n_shards = shard_count(contigs, spec, args.fasta)
    except GenembedError:
        if not existed:  # leave nothing behind for a genome that cannot be embedded
            for f in (fasta, fasta.with_name(fasta.name + ".fai"), fasta.with_name(fasta.name + ".gzi")):
                f.unlink(missing_ok=True)
        raise
    tokenizer = make_tokenizer(tok_spec, embedder.tokenizer)
    fits = token_fit(tokenizer, plan["max_tokens"], args.strands)
    attrs = shard_attrs(embedder, plan, plan["tokenizer"], spec.size, spec.stride)
    todo = []
    for shard in range(n_shards):
        name = f"{shard:05d}"
        files = ShardFiles(out / "windows" / f"{name}.parquet", out / "tokens" / f"{name}.tokens.npy",
                           out / "tokens" / f"{name}.offsets.npy", out / "embeddings" / f"{name}.h5")
        if is_complete(files.out, attrs) and files.windows.is_file():
            print(f"shard {name}: already embedded")
        else:
            todo.append(files)

    def prepare(files: ShardFiles) -> None:  # runs in the background while the previous shard embeds
        write_shard_windows(args.genome, fasta, spec, int(files.out.stem), files.windows, fits)
        tokenize_shard(files.windows, fasta, tokenizer, plan["max_tokens"], files.tokens, files.offsets, args.strands)

    n = embed_shards(todo, embedder, attrs, prepare)
    print(f"{out}: {n_shards} shards, {n} windows embedded now (window {spec.size} bp, stride {spec.stride} bp)")


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
    from .reports.clusters import ClusterSettings, cluster_report
    from .reports.data import from_embed_folders
    from .reports.promoters import PromoterSettings, promoter_report
    from .store import read_attrs

    genomes = from_embed_folders(args.embeddings)
    by_name = {g.name: g for g in genomes}
    for field, files in (("annotation", args.annotation), ("promoters", args.promoters)):
        for name, path in files:
            if name not in by_name:
                raise GenembedError(f"--{field} {name}={path}: no genome '{name}' under {args.embeddings}")
            setattr(by_name[name], field, Path(path))
    out = Path(args.out)
    cluster_report(genomes, out / "clusters", ClusterSettings(method=args.method, k=args.k, seed=args.seed))
    print(f"{out / 'clusters/clusters.html'}")
    if any(g.annotation or g.promoters for g in genomes):
        attrs = read_attrs(genomes[0].shards[0])
        stride = int(attrs["window_stride"])
        settings = PromoterSettings(track_step=args.track_step, seed=args.seed)
        embed = None
        if settings.track_step < stride:  # a dense scan with the model the shards name
            from .embed import EmbedSettings, model_embedder
            from .models import ModelSpec, fingerprint, resolve
            from .tokenize import TokenizerSpec

            spec = ModelSpec(str(attrs["model"]), attrs.get("revision") or None, args.trust_remote_code)
            if fingerprint(resolve(spec)) != attrs["model_fingerprint"]:
                raise GenembedError(f"{attrs['model']}: not the model the shards were embedded with (its files changed);"
                                    f" the dense promoter track needs that model (or --track-step {stride} for one"
                                    " value per stored window)")
            embed = model_embedder(spec, TokenizerSpec.parse(str(attrs["tokenizer"])),
                                   EmbedSettings(str(attrs["pooling"]), int(attrs["layer"]), strands=str(attrs["strands"])))
        promoter_report(genomes, out / "promoters", settings, stride, embed, int(attrs["window_size"]))
        print(f"{out / 'promoters/promoters.html'}")


def cmd_export(args: argparse.Namespace) -> None:
    """Per genome, a virtual HDF5 over its shards (``--vds DIR``), and/or all windows as AnnData."""
    from .h5ad import export_h5ad
    from .reports.data import from_embed_folders
    from .store import stitch

    genomes = from_embed_folders(args.embeddings)
    if args.genome:
        genomes = [g for g in genomes if g.name in set(args.genome)]
    if not (args.vds or args.h5ad):
        raise GenembedError("nothing to export: give --vds DIR and/or --h5ad FILE")
    if args.vds:
        for g in genomes:
            n = stitch(g.shards, Path(args.vds) / f"{g.name}.h5")
            print(f"{Path(args.vds) / (g.name + '.h5')}: {n} windows (virtual, over {len(g.shards)} shards)")
    if args.h5ad:
        n = export_h5ad([w for g in genomes for w in g.windows], [s for g in genomes for s in g.shards], args.h5ad)
        print(f"{args.h5ad}: {n} windows")


def cmd_index(args: argparse.Namespace) -> None:
    from .index import IndexSettings, build_index
    from .models import ModelSpec, describe
    from .reports.data import from_embed_folders

    found = from_embed_folders(args.embeddings)
    shards = [s for g in found for s in g.shards]
    windows = [w for g in found for w in g.windows]
    genomes = {g.name: str(g.fasta) for g in found}
    model = describe(ModelSpec(args.model, args.revision, args.trust_remote_code))
    settings = IndexSettings(args.type, args.factory, nprobe=args.nprobe, ef_search=args.ef_search, rerank=args.rerank)
    manifest = build_index(shards, windows, args.out, model, genomes, settings)
    print(f"{args.out}: {manifest['index']['count']} vectors, dimension {manifest['index']['dim']},"
          f" {manifest['index']['factory']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genembed", description="Genome-scale DNA language-model embeddings, similarity search and reports.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("--version", action="version", version=f"genembed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a small DNA BERT (masked LM) on genomes")
    p.add_argument("--fasta", nargs="+", required=True, help="genome FASTA files (plain, gzip or bgzip)")
    p.add_argument("--out", required=True, help="output model folder (Hugging Face format)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=30.0)
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq-bp", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pretrain)

    t = sub.add_parser("tune", help="contrastive training: a new genembed encoder, or any model (--model) tuned")
    t.add_argument("--fasta", nargs="+", required=True, help="training genomes (plain, gzip or bgzip FASTA)")
    t.add_argument("--out", required=True, help="output model folder (Hugging Face format)")
    t.add_argument("--model", help="model folder or hub id to tune (default: a new genembed-conv encoder)")
    t.add_argument("--revision")
    t.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model")
    t.add_argument("--tokenizer", choices=["hf", "kmer"], default="hf")
    t.add_argument("--k", type=int, default=6)
    t.add_argument("--overlap", action="store_true", help="overlapping k-mers (DNABERT)")
    t.add_argument("--steps", type=int, default=TUNE_DEFAULTS.steps)
    t.add_argument("--max-minutes", type=float, default=TUNE_DEFAULTS.max_minutes)
    t.add_argument("--batch-size", type=int, default=TUNE_DEFAULTS.batch_size, help="loci per step (two views each)")
    t.add_argument("--seq-bp", type=int, default=TUNE_DEFAULTS.seq_bp, help="view length (bp)")
    t.add_argument("--max-shift", type=int, help="largest shift between views (bp; default 4/5 of --seq-bp)")
    t.add_argument("--max-mutation", type=float, default=TUNE_DEFAULTS.max_mutation, help="largest substitution rate")
    t.add_argument("--learning-rate", type=float, help="peak AdamW rate (default: 2e-3 for a new encoder, 5e-5 with --model)")
    t.add_argument("--temperature", type=float, default=TUNE_DEFAULTS.temperature)
    t.add_argument("--hidden-size", type=int, default=TUNE_DEFAULTS.hidden_size, help="new encoder only")
    t.add_argument("--layers", type=int, default=TUNE_DEFAULTS.layers, help="new encoder only")
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_tune)

    v = sub.add_parser("evaluate", help="score a model's embeddings against 4-mer counts and GC on sampled windows")
    v.add_argument("--fasta", nargs="+", required=True, help="genomes (plain, gzip or bgzip FASTA)")
    v.add_argument("--genome", action="append", help="genome names, in --fasta order (default: file names)")
    v.add_argument("--out", required=True, help="folder for evaluate.html, evaluate.tsv and comparison.tsv")
    _model_args(v)
    v.add_argument("--tokenizer", choices=["hf", "kmer"], default="hf")
    v.add_argument("--k", type=int, default=6)
    v.add_argument("--overlap", action="store_true", help="overlapping k-mers (DNABERT)")
    v.add_argument("--window", type=_size, default=500, help="bp, or auto: the longest the model takes")
    v.add_argument("--stride", type=_size, default=250, help="bp, or auto: half the window")
    v.add_argument("--max-n-fraction", type=float, default=0.1)
    v.add_argument("--pooling", choices=["mean", "cls", "max"], default="mean")
    v.add_argument("--strands", choices=["forward", "average"], default="forward")
    v.add_argument("--layer", type=int, default=-1)
    v.add_argument("--token-budget", type=int, default=16384)
    v.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    v.add_argument("--device", default="auto")
    v.add_argument("--windows", type=int, default=2000, help="anchor windows sampled, shared among genomes")
    v.add_argument("--promoters-report", help="a promoter report folder: its metrics join the table")
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("prepare", help="validate a FASTA (plain, gzip, bgzip) into indexed bgzip")
    p.add_argument("fasta")
    p.add_argument("out", help="output .fa.gz (with .fai and .gzi beside it)")
    p.set_defaults(func=cmd_prepare)

    e = sub.add_parser("embed", help="window, tokenize and embed one genome into OUT/{windows,tokens,embeddings}")
    e.add_argument("--fasta", required=True)
    e.add_argument("--genome", required=True, help="genome id (letters, digits, . _ -)")
    e.add_argument("--out", required=True, help="folder for this genome (OUT/<genome> by convention)")
    _model_args(e)
    e.add_argument("--window", type=_size, default="auto", help="bp, or auto: the longest the model takes")
    e.add_argument("--stride", type=_size, default="auto", help="bp, or auto: half the window")
    e.add_argument("--max-n-fraction", type=float, default=0.1)
    e.add_argument("--shard-size", type=_shard_size, default="auto",
                   help="windows per shard, or auto: at most about 500 shards, multiples of 2,500 windows")
    e.add_argument("--tokenizer", choices=["hf", "kmer"], default="hf")
    e.add_argument("--k", type=int, default=6)
    e.add_argument("--overlap", action="store_true", help="overlapping k-mers (DNABERT)")
    e.add_argument("--pooling", choices=["mean", "cls", "max"], default="mean")
    e.add_argument("--strands", choices=["forward", "average"], default="forward",
                   help="average: mean of the window and its reverse complement")
    e.add_argument("--layer", type=int, default=-1)
    e.add_argument("--token-budget", type=int, default=16384)
    e.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_embed)

    i = sub.add_parser("index", help="FAISS index over the genomes embedded under a folder by 'genembed embed'")
    i.add_argument("--embeddings", required=True, help="folder holding one 'genembed embed' folder per genome")
    i.add_argument("--out", required=True)
    _model_args(i)
    i.add_argument("--type", choices=["auto", "flat", "ivf", "hnsw", "ivfpq"], default="auto",
                   help="auto: exact below 100,000 windows, HNSW below 5M, OPQ + IVF-PQ above")
    i.add_argument("--factory", help="any FAISS factory string (instead of --type)")
    i.add_argument("--nprobe", type=int, default=16, help="IVF lists searched per query")
    i.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth")
    i.add_argument("--rerank", type=int, default=30,
                   help="PQ indexes: fetch this many times the hits and re-score them exactly from the stored embeddings")
    i.set_defaults(func=cmd_index)

    r = sub.add_parser("report", help="clustering and promoter-prediction reports over 'genembed embed' folders")
    r.add_argument("--embeddings", required=True, help="folder holding one 'genembed embed' folder per genome")
    r.add_argument("--out", required=True, help="reports go to OUT/clusters and OUT/promoters")
    r.add_argument("--annotation", type=_named_path, action="append", default=[], metavar="GENOME=GFF",
                   help="GFF3 or GTF of a genome (repeat for several)")
    r.add_argument("--promoters", type=_named_path, action="append", default=[], metavar="GENOME=BED",
                   help="BED of known promoters or TSSs of a genome; takes precedence over its annotation")
    r.add_argument("--method", choices=["kmeans", "hdbscan"], default="kmeans")
    r.add_argument("--k", type=_size, default="auto", help="k-means clusters, or auto: the best silhouette (default)")
    r.add_argument("--track-step", type=int, default=100,
                   help="bp between promoter-track values (a dense scan with the shards' model); at or above the"
                        " stride, one value per window")
    r.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model (dense scan)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=cmd_report)

    x = sub.add_parser("export", help="virtual HDF5 per genome over its shards, or AnnData (.h5ad) for scanpy")
    x.add_argument("--embeddings", required=True, help="folder holding one 'genembed embed' folder per genome")
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
    q.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    q.add_argument("--genome", action="append", help="only hits in this genome (repeat for several)")
    q.add_argument("--exclude-self", action="store_true", help="with --region: drop hits overlapping the region")
    q.add_argument("--model", help="model folder to embed queries with (refused unless it is the index's model)")
    q.add_argument("--format", choices=["tsv", "json", "bed", "parquet"], default="tsv")
    q.add_argument("--out", help="write here instead of standard output")
    q.set_defaults(func=cmd_query)
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


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="local model folder or hub id")
    p.add_argument("--revision")
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    try:
        args.func(args)
    except GenembedError as exc:
        print(f"genembed: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
