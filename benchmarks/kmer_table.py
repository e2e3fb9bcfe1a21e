"""Issue 28 exploration: a learned linear k-mer branch. A table of one D-dim vector per strand-canonical
k-mer, so that a window's vector is its k-mer frequencies times the table (what a model's k-mer
embedding gives when mean-pooled), trained contrastively (InfoNCE, in-batch negatives, half of each
batch from one genome) on 500-bp windows of the training genomes (E. coli; C. elegans I-III;
A. thaliana Chr1-Chr3: never the held-out chromosomes) against copies shifted by up to ``--max-shift``
bp and mutated at 0-``--max-mutation`` (substitutions, indels at a tenth of that), either strand.
Writes the table as .npy, for ``benchmarks/kmer_concat.py --table``. Not a test: it prints losses.

    .venv/bin/python benchmarks/kmer_table.py --k 6 --dim 256 --steps 2000 --out /tmp/table.npy
"""

from __future__ import annotations

import argparse
import gzip
import time

import numpy as np
import torch

from genembed.evaluate import canonical_kmer_frequencies, reverse_complement
from quality import REPO

TRAINING = [REPO / "resources/example/ecoli_k12_mg1655.fna.gz", REPO / "resources/training/C.elegans.I-II-III.fa.gz",
            REPO / "resources/training/A.thaliana.Chr1-Chr2-Chr3.fa.gz"]


def load_codes() -> list[bytes]:
    """Each training genome's contigs joined (N-separated), upper case."""
    out = []
    for path in TRAINING:
        with gzip.open(path, "rb") as fh:
            contigs = [b"".join(part.split(b"\n")[1:]) for part in fh.read().split(b">")[1:]]
        out.append(b"N".join(c.upper() for c in contigs))
    return out


def mutate(seq: bytes, rate: float, rng: np.random.Generator) -> bytes:
    """Substitutions at ``rate`` (to another base) and 1-3 bp indels at a tenth of it."""
    arr = np.frombuffer(seq, dtype=np.uint8).copy()
    lut = np.frombuffer(b"ACGT", dtype=np.uint8)
    code = np.full(256, 255, dtype=np.uint8)
    code[lut] = np.arange(4)
    c = code[arr]
    hit = (rng.random(len(arr)) < rate) & (c < 4)
    arr[hit] = lut[(c[hit] + rng.integers(1, 4, hit.sum())) % 4]
    out = bytearray(arr.tobytes())
    for i in np.flatnonzero(rng.random(len(out)) < rate * 0.1)[::-1]:
        n = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            del out[i:i + n]
        else:
            out[i:i] = bytes(lut[rng.integers(0, 4, n)])
    return bytes(out)


def batch(genomes: list[bytes], n: int, size: int, args, rng: np.random.Generator) -> tuple[list[bytes], list[bytes]]:
    """``n`` anchors (half from one genome, the rest from any) and their mutated, shifted copies."""
    anchors, views = [], []
    one = int(rng.integers(len(genomes)))
    while len(anchors) < n:
        g = genomes[one] if len(anchors) < n * args.hard else genomes[int(rng.integers(len(genomes)))]
        s = int(rng.integers(args.max_shift, len(g) - size - 2 * args.max_shift))
        a = g[s:s + size]
        if a.count(b"N") > 5:
            continue
        shift = int(rng.integers(-args.max_shift, args.max_shift + 1))
        v = mutate(g[s + shift:s + shift + size + 40], float(rng.uniform(0, args.max_mutation)), rng)[:size]
        anchors.append(a)
        views.append(reverse_complement(v) if rng.random() < 0.5 else v)
    return anchors, views


def features(seqs: list[bytes], k: int) -> torch.Tensor:
    f = canonical_kmer_frequencies(seqs, k)
    return torch.from_numpy(f - f.mean(1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--max-shift", type=int, default=125)
    parser.add_argument("--max-mutation", type=float, default=0.35)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--hard", type=float, default=0.5, help="share of each batch drawn from one genome")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    genomes = load_codes()
    n_kmers = canonical_kmer_frequencies([b"ACGT" * 10], args.k).shape[1]
    # start from a random projection (what --project measures), scaled to keep the frequencies' norms
    table = torch.nn.Parameter(torch.randn(n_kmers, args.dim) / np.sqrt(args.dim))
    opt = torch.optim.Adam([table], lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    t0 = time.time()
    for step in range(args.steps):
        a, v = batch(genomes, args.batch, 500, args, rng)
        za = torch.nn.functional.normalize(features(a, args.k) @ table, dim=1)
        zv = torch.nn.functional.normalize(features(v, args.k) @ table, dim=1)
        logits = za @ zv.T / args.temperature
        target = torch.arange(len(a))
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} (chance {np.log(args.batch):.2f}) {time.time() - t0:.0f} s", flush=True)
            np.save(args.out, table.detach().numpy())


if __name__ == "__main__":
    main()
