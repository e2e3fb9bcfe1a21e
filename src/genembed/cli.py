"""The ``genembed`` command line: the same library calls the workflow scripts make."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from .errors import GenembedError


def _prepared(fastas: list[str], workdir: Path) -> list[Path]:
    """Prepared (bgzip + faidx) copies of FASTA files, made in ``workdir`` where needed."""
    from .genome import prepare_fasta

    out = []
    for i, fasta in enumerate(fastas):
        path = Path(fasta)
        if Path(f"{path}.fai").is_file() and (not path.suffix == ".gz" or Path(f"{path}.gzi").is_file()):
            out.append(path)
        else:
            dst = workdir / f"genome{i}.fa.gz"
            prepare_fasta(path, dst)
            out.append(dst)
    return out


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        hidden_size=args.hidden_size, layers=args.layers, heads=args.heads,
        intermediate_size=args.hidden_size * 4, seq_bp=args.seq_bp, batch_size=args.batch_size,
        steps=args.steps, max_minutes=args.max_minutes, learning_rate=args.learning_rate, seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        stats = pretrain(_prepared(args.fasta, Path(tmp)), args.out, cfg)
    print(f"saved {args.out}: {stats['steps']} steps, final loss {stats['final_loss']}")


def cmd_query(args: argparse.Namespace) -> None:
    from .io import atomic_path
    from .query import Index, Region, format_hits, read_fasta_queries

    index = Index.open(args.index)
    if args.sequence:
        hits = index.search({"query": args.sequence.strip().upper().encode()}, args.k)
    elif args.fasta:
        hits = index.search(read_fasta_queries(args.fasta), args.k)
    else:
        hits = index.search_region(Region.parse(args.region), args.k)
    text = format_hits(hits, args.format)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
    else:
        sys.stdout.write(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genembed", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
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

    q = sub.add_parser("query", help="find the windows most similar to sequences or a genome region")
    q.add_argument("--index", required=True, help="index folder (results/index)")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--sequence", help="a DNA sequence")
    what.add_argument("--fasta", help="a FASTA file of query sequences (plain or gzip)")
    what.add_argument("--region", help="GENOME:CONTIG:START-END, 0-based half-open as in the hit tables")
    q.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    q.add_argument("--format", choices=["tsv", "json", "bed"], default="tsv")
    q.add_argument("--out", help="write here instead of standard output")
    q.set_defaults(func=cmd_query)
    return parser


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
