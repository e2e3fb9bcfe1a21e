"""Train a small BERT-style masked language model on genomes, saved as a Hugging Face model folder.

This is how genembed ships a real model that runs offline: the same ``from_pretrained`` path loads
it as any hub model. The tokenizer is Nucleotide-Transformer style non-overlapping 6-mers (runs of
A/C/G/T cut into 6-mers, other characters and leftovers as single-character tokens).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import GenembedError
from .genome import Genome

log = logging.getLogger(__name__)
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class PretrainConfig:
    """Model size and training budget."""

    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    max_tokens: int = 512
    k: int = 6
    seq_bp: int = 1000
    batch_size: int = 32
    steps: int = 2000
    max_minutes: float = 30.0
    learning_rate: float = 1e-3
    mask_fraction: float = 0.15
    seed: int = 0

    @property
    def intermediate_size(self) -> int:
        """Feed-forward width: 4x the hidden size, as in BERT."""
        return 4 * self.hidden_size


def build_tokenizer(k: int, max_tokens: int, wrap: bool = True):
    """A fast Hugging Face tokenizer for non-overlapping k-mers (k = 1: single nucleotides),
    loadable by AutoTokenizer; ``wrap`` puts ``[CLS]`` ... ``[SEP]`` around each sequence."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    singles = SPECIALS + list("ACGTN")
    tokens = singles + [s for s in ("".join(p) for p in itertools.product("ACGT", repeat=k)) if s not in singles]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(f"[ACGT]{{{k}}}|."), behavior="isolated")
    if wrap:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_tokens,
    )


def _sampler(genomes: Sequence[Genome], seq_bp: int, rng: np.random.Generator):
    regions = [(g, c, n) for g in genomes for c, n in g.contigs.items() if n >= seq_bp]
    if not regions:
        raise GenembedError(f"no contig is as long as the pretraining sequence length ({seq_bp} bp)")
    weights = np.array([n - seq_bp + 1 for _, _, n in regions], dtype=float)
    weights /= weights.sum()

    def sample(n: int) -> list[bytes]:
        out = []
        for i in rng.choice(len(regions), size=n, p=weights):
            genome, contig, length = regions[i]
            start = int(rng.integers(0, length - seq_bp + 1))
            out.append(genome.fetch(contig, start, start + seq_bp))
        return out

    return sample


def pretrain(fastas: Sequence[str | Path], out: str | Path, cfg: PretrainConfig = PretrainConfig()) -> dict:
    """Train the model and save it (safetensors, tokenizer, model card) to ``out``; returns stats."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from .embed import cpu_has_bf16, pad_rows
    from .tokenize import KmerTokenizer

    if cfg.seq_bp // cfg.k + cfg.k + 2 > cfg.max_tokens:  # whole k-mers, leftovers, [CLS], [SEP]
        raise GenembedError(f"pretraining sequences of {cfg.seq_bp} bp need more than {cfg.max_tokens} tokens;"
                            f" use at most {(cfg.max_tokens - cfg.k - 2) * cfg.k} bp")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    hf_tok = build_tokenizer(cfg.k, cfg.max_tokens)
    kmer = KmerTokenizer.from_hf(hf_tok, cfg.k, overlap=False)
    genomes = [Genome(Path(f)) for f in fastas]
    sample = _sampler(genomes, cfg.seq_bp, rng)
    model_cfg = BertConfig(
        vocab_size=len(hf_tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_tokens, pad_token_id=hf_tok.pad_token_id,
    )
    model = BertForMaskedLM(model_cfg)
    model.train()
    opt, sched = warmup_cosine(model, cfg.learning_rate, cfg.steps)
    special = torch.tensor([hf_tok.convert_tokens_to_ids(t) for t in SPECIALS])
    first_kmer = len(SPECIALS) + 5
    use_bf16 = cpu_has_bf16()
    losses: list[float] = []
    started = time.monotonic()
    step = 0
    while step < cfg.steps and time.monotonic() - started < cfg.max_minutes * 60:
        # N and other codes make rows longer; an N-rich sample is cut to the model's length
        rows = [r[: cfg.max_tokens] for r in kmer.encode_batch(sample(cfg.batch_size))]
        ids = torch.from_numpy(pad_rows(rows, hf_tok.pad_token_id))
        labels = ids.clone()
        maskable = ~torch.isin(ids, special)
        chosen = (torch.rand(ids.shape) < cfg.mask_fraction) & maskable
        labels[~chosen] = -100
        roll = torch.rand(ids.shape)
        inputs = ids.clone()
        inputs[chosen & (roll < 0.8)] = hf_tok.mask_token_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs[swap] = torch.randint(first_kmer, len(hf_tok), (int(swap.sum()),))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(input_ids=inputs, attention_mask=(ids != hf_tok.pad_token_id).long(), labels=labels).loss
        losses.append(optimizer_step(model, loss, opt, sched))
        step += 1
        if step % 50 == 0 or step == 1:
            log.info("step %d loss %.4f (%.0f s)", step, losses[-1], time.monotonic() - started)
    stats = {
        "steps": step,
        "seconds": round(time.monotonic() - started, 1),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "first_loss": round(losses[0], 4),
        "genomes": {str(g.path): sum(g.contigs.values()) for g in genomes},
        "config": asdict(cfg),
        "bf16_autocast": use_bf16,
    }
    _save_folder(model, hf_tok, Path(out), stats, _model_card(stats))
    return stats


def warmup_cosine(model, lr: float, steps: int):
    """AdamW (weight decay 0.01) with a linear warm-up over the first 5% of ``steps``, then cosine decay."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    return opt, sched


def optimizer_step(model, loss, opt, sched) -> float:
    """Backpropagate ``loss``, clip the gradient norm at 1, step the optimiser and the schedule;
    returns the loss."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def _save_folder(model, tokenizer, out: Path, stats: dict, card: str) -> None:
    """Write a model folder (weights, tokenizer, ``training.json``, model card) atomically: a
    temporary folder renamed into place."""
    import shutil

    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(stats, indent=2) + "\n")
    (tmp / "README.md").write_text(card)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _model_card(stats: dict) -> str:
    c = stats["config"]
    data = "\n".join(f"- `{Path(p).name}`: {n:,} bp" for p, n in stats["genomes"].items())
    return f"""# genembed tiny DNA BERT

A small BERT masked language model trained by `genembed pretrain`, so genembed runs offline.

- Architecture: BERT, {c['layers']} layers, hidden size {c['hidden_size']}, {c['heads']} heads,
  feed-forward {4 * c['hidden_size']}, at most {c['max_tokens']} tokens.
- Tokenizer: non-overlapping {c['k']}-mers (Nucleotide Transformer style); other characters and
  leftover bases are single-character tokens; `[CLS]` ... `[SEP]` around each sequence.
- Objective: masked language modelling, {c['mask_fraction']:.0%} of tokens (80/10/10 rule).
- Training: {stats['steps']} steps of {c['batch_size']} random {c['seq_bp']}-bp sequences (budget:
  {c['steps']} steps or {c['max_minutes']} minutes, whichever came first), AdamW (lr {c['learning_rate']},
  warm-up then cosine decay), seed {c['seed']}, bf16 autocast: {stats['bf16_autocast']}, {stats['seconds']} s.
- Loss: {stats['first_loss']} at step 1, final loss {stats['final_loss']} (mean of the last 20 steps).

## Data
{data}

This is a small demonstration model: use a published DNA model for research results.
"""
