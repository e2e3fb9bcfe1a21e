"""A k-mer branch fused beside a trained genembed-conv encoder (issue 28): a table of one vector per
k-mer, looked up at every position, in channels of its own after the convolutional ones. Mean-pooled,
that block is the window's k-mer frequencies times the table, so the table is trained on pooled
frequencies (tune's loss and views, the convolutions frozen: a step costs ~0.2 s on one core, not the
encoder's ~6 s), then written into the model's weights. Each block is scaled so that it carries a set
share of a typical window vector's squared length.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genembed.errors import GenembedError

log = logging.getLogger(__name__)
PROBE_WINDOWS = 512  # unmutated training windows that set the blocks' scales
PROJECTION_WINDOWS = 10_000  # training windows whose mean k-mer frequencies weight a projection's rows
IDF_POWER = 0.5  # a projection's row for a k-mer is weighted by (its mean frequency / the mean) ** -IDF_POWER


def canonical_columns(k: int) -> np.ndarray:
    """For each of the 4^k k-mers (A=0 .. T=3, first base most significant), the column of its
    strand-canonical pair in :func:`genembed.data.windows.canonical_kmer_frequencies`."""
    powers = 4 ** np.arange(k - 1, -1, -1)
    codes = np.array(list(itertools.product(range(4), repeat=k)))
    rc = (3 - codes[:, ::-1]) @ powers
    return np.unique(np.minimum(np.arange(4**k), rc), return_inverse=True)[1]


def _centred(seqs: Sequence[bytes], k: int):
    import torch

    from genembed.data.windows import canonical_kmer_frequencies

    f = canonical_kmer_frequencies(seqs, k)
    return torch.from_numpy(f - f.mean(1, keepdims=True))


def train_table(sampler: Any, k: int, channels: int, steps: int, batch_size: int, lr: float,
                temperature: float, max_minutes: float) -> tuple[np.ndarray, dict[str, Any]]:
    """A table (one row per canonical k-mer) trained with NT-Xent on the pooled, centred frequencies
    of ``sampler``'s view pairs; returns it with the run's numbers (losses every 50 steps)."""
    import torch

    from genembed.encode.tune import nt_xent, warmup_cosine

    n_kmers = len(np.unique(canonical_columns(k)))
    table = torch.nn.Linear(n_kmers, channels, bias=False)  # starts as a random projection
    opt, sched = warmup_cosine(table, lr, steps)
    losses, accuracies, started, step = [], [], time.monotonic(), 0
    while step < steps and time.monotonic() - started < max_minutes * 60:
        first, second = sampler.pairs(batch_size, step)
        z = torch.nn.functional.normalize(table(_centred(first + second, k)), dim=1)
        loss, accuracy = nt_xent(z[:batch_size], z[batch_size:], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        accuracies.append(accuracy.item())
        step += 1
        if step % 100 == 0 or step == 1:
            log.info("k-mer branch step %d loss %.4f in-batch top-1 %.3f (%.0f s)", step, np.mean(losses[-100:]),
                     np.mean(accuracies[-100:]), time.monotonic() - started)
    if not losses:
        raise GenembedError("tune: no training step of the k-mer branch ran (max_minutes too small?)")
    stats = {"steps": step, "seconds": round(time.monotonic() - started, 1), "finished": step >= steps,
             "first_loss": round(losses[0], 4), "final_loss": round(float(np.mean(losses[-50:])), 4),
             "final_in_batch_top1": round(float(np.mean(accuracies[-50:])), 4),
             "chance_loss": round(math.log(2 * batch_size - 1), 4),
             "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)]}
    return table.weight.detach().numpy().T.copy(), stats


def projection_table(seqs: Sequence[bytes], k: int, channels: int, seed: int,
                     power: float = IDF_POWER) -> np.ndarray:
    """A fixed table (canonical k-mers x ``channels``): Gaussian random rows, each k-mer's row weighted
    by (its mean frequency in ``seqs`` / the mean frequency) ** -``power``, an IDF-like weight. Common
    k-mers (poly-A, a genome's composition) then count less than rare ones, which tell two loci
    apart: held out, an overlapping window's top-10 rate goes from 0.968 (unweighted, 256 channels)
    to 0.987, above the full canonical 6-mer profile's 0.970 (resources/training/README.md)."""
    from genembed.data.windows import canonical_kmer_frequencies

    if not seqs:
        raise GenembedError("tune --kmer-projection: no training windows to weight the k-mers with")
    mean = canonical_kmer_frequencies(list(seqs), k).mean(0)
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((len(mean), channels)) / math.sqrt(channels)
    return table * (((mean + 1e-6) / mean.mean()) ** -power)[:, None]


def fuse(net: Any, tokenizer: Any, table: np.ndarray, k: int, share: float, probe: Sequence[bytes]) -> Any:
    """A copy of the genembed-conv encoder ``net`` with ``table`` (canonical k-mers x channels) as its
    k-mer branch; the convolutional block carries ``1 - share`` and the k-mer block ``share`` of the
    median squared length over the ``probe`` windows."""
    import torch

    from genembed.encode.convnet import GenembedConvConfig, GenembedConvModel

    cfg = net.config
    if getattr(cfg, "model_type", None) != GenembedConvConfig.model_type:
        raise GenembedError(f"tune --kmer-channels: fuses a k-mer branch into a genembed-conv encoder, not {cfg.model_type}")
    if cfg.kmer_size:
        raise GenembedError("tune --kmer-channels: the model already has a k-mer branch")
    if not 0 < share < 1:
        raise GenembedError(f"tune --kmer-share: must be between 0 and 1, not {share}")
    vocab = tokenizer.get_vocab()
    ids = [torch.tensor([[vocab[chr(b)] for b in seq.upper() if chr(b) in vocab]]) for seq in probe]
    with torch.no_grad():
        pooled = [net(input_ids=row).last_hidden_state.mean(1)[0].float() for row in ids]
    conv_norm = float(np.median([p.norm().item() for p in pooled]))
    kmer_norm = float(np.median(np.linalg.norm(_centred(list(probe), k).numpy() @ table, axis=1)))
    fused_cfg = GenembedConvConfig(**(cfg.to_dict() | {
        "kmer_size": k, "kmer_channels": table.shape[1], "base_ids": [vocab[b] for b in "ACGT"],
        "hidden_scale": math.sqrt(1 - share) / conv_norm}))
    fused = GenembedConvModel(fused_cfg)
    missing, unexpected = fused.load_state_dict(net.state_dict(), strict=False)
    if unexpected or missing != ["kmer.weight"]:
        raise GenembedError(f"tune --kmer-channels: weights do not match the fused model ({missing}, {unexpected})")
    rows = (table - table.mean(0)) * (math.sqrt(share) / kmer_norm)  # centred: frequencies sum to 1
    with torch.no_grad():
        fused.kmer.weight[:-1] = torch.from_numpy(rows[canonical_columns(k)]).float()
        fused.kmer.weight[-1] = 0
    return fused.eval()


def tune_branch(fastas: Sequence[Path], model: str, out: str | Path, cfg: Any) -> dict:
    """``genembed tune --model M --kmer-channels D``: train a k-mer branch for the genembed-conv
    encoder ``model`` on ``fastas`` (views as :class:`~genembed.encode.tune.ViewSampler` makes them for
    ``cfg``) and save the fused model to ``out``."""
    from genembed.data.genome import Genome
    from genembed.encode.models import ModelSpec, load_model, load_tokenizer, resolve
    from genembed.encode.tune import _save_folder, model_card, ViewSampler

    spec = ModelSpec(model)
    folder = resolve(spec)
    net, tok = load_model(folder, spec).eval(), load_tokenizer(folder, spec)
    if cfg.kmer_size < 1:
        raise GenembedError("tune --kmer-channels: give the branch's k-mer length with --kmer-size (e.g. 6)")
    rng = np.random.default_rng(cfg.seed)
    import torch

    torch.manual_seed(cfg.seed)
    genomes = [Genome(Path(f)) for f in fastas]
    sampler = ViewSampler(genomes, cfg, rng)
    lr = cfg.learning_rate or 3e-3
    if cfg.kmer_projection:
        started = time.monotonic()
        seqs = sampler.pairs(PROJECTION_WINDOWS)[0]
        table = projection_table(seqs, cfg.kmer_size, cfg.kmer_channels, cfg.seed)
        stats = {"steps": 0, "seconds": round(time.monotonic() - started, 1), "finished": True,
                 "projection_windows": len(seqs), "idf_power": IDF_POWER}
        objective = "none: the k-mer branch is a fixed, IDF-weighted random projection; the encoder unchanged"
    else:
        table, stats = train_table(sampler, cfg.kmer_size, cfg.kmer_channels, cfg.steps, cfg.batch_size, lr,
                                   cfg.temperature, cfg.max_minutes)
        objective = "contrastive (NT-Xent, in-batch negatives); only the k-mer branch trained, the encoder frozen"
    probe = sampler.pairs(PROBE_WINDOWS, 0)[0]
    fused = fuse(net, tok, table, cfg.kmer_size, cfg.kmer_share, probe)
    stats = {"objective": objective, "base_model": model, "tokenizer": "kmer (k=1)", **stats,
             "genomes": {Path(g.path).name: sum(g.contigs.values()) for g in genomes},
             "config": asdict(cfg) | {"learning_rate": lr}, "bf16_autocast": False, "device": "cpu"}
    for g in genomes:
        g.close()
    _save_folder(fused, tok, Path(out), stats, model_card(stats))
    return stats
