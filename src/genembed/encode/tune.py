"""``genembed tune``: contrastive training that makes a model's pooled window embeddings find the
same locus again, for genembed's own encoder (trained from scratch) or any Hugging Face model.

Recipe (SimCLR's NT-Xent with in-batch negatives, as DNABERT-S trains DNABERT-2): each step samples
``batch_size`` loci of the training genomes; each locus gives two views, windows of ``seq_bp`` bp
shifted by up to ``max_shift`` bp against each other (so they share at least ``seq_bp - max_shift``
bp), each mutated at a random rate up to ``max_mutation`` (substitutions plus small indels, as
``genembed evaluate`` mutates) and read from a random strand. With ``mutate_one``, only the second view
is mutated, as in search, where a diverged query meets the genome's own, unmutated windows. The loss pulls a locus' two views
together (cosine of the mean-pooled embeddings, over ``temperature``) and pushes the other loci of
the batch away. The model folder written is loaded like any other (``model.path``).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from genembed.errors import GenembedError

log = logging.getLogger(__name__)
NEW_LR, TUNE_LR = 2e-3, 5e-5  # AdamW peak learning rates: a new encoder, a trained model
CHECKPOINT_EVERY = 50  # steps between saved states of a run given a checkpoint folder
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class TuneConfig:
    """Views, loss and budget; the sizes apply only to a new genembed encoder (no ``--model``)."""

    seq_bp: int = 500
    max_shift: int | None = None  # None: 4/5 of seq_bp (400 bp for 500-bp views)
    max_mutation: float = 0.10
    mutation_warmup: float = 0.0  # share of the steps over which the largest rate ramps up from 10% (a curriculum)
    indel_share: float = 0.1
    hard_negatives: float = 0.0  # share of each batch's loci drawn beside another of the same genome and GC
    mutate_one: bool = False  # mutate the second view only (a query against the genome), not both
    batch_size: int = 64
    steps: int = 2000
    max_minutes: float = 60.0
    learning_rate: float | None = None  # None: 2e-3 for a new encoder, 5e-5 when tuning a trained model
    temperature: float = 0.05
    seed: int = 0
    hidden_size: int = 128
    layers: int = 4
    kernel_size: int = 9
    kmer_size: int = 0  # a new encoder's k-mer branch (odd k; 0: none), see genembed.encode.convnet
    kmer_channels: int = 0  # >0: train only a k-mer branch of this many channels fused beside --model (genembed.encode.kmerbranch)
    kmer_share: float = 0.5  # the fused k-mer block's share of a window vector's squared length
    kmer_projection: bool = False  # with kmer_channels: the branch is a fixed IDF-weighted random projection, not trained

    def __post_init__(self) -> None:
        if self.max_shift is None:
            object.__setattr__(self, "max_shift", self.seq_bp * 4 // 5)
        if not 0 <= self.max_shift < self.seq_bp:
            raise GenembedError(f"tune: the largest shift ({self.max_shift} bp) must be below the view length"
                                f" ({self.seq_bp} bp), so that the two views of a locus share bases")
        if not 0 <= self.hard_negatives <= 1 or not 0 <= self.mutation_warmup <= 1:
            raise GenembedError("tune: hard_negatives and mutation_warmup are shares, from 0 to 1")
        if self.batch_size < 2 or self.steps < 1:
            raise GenembedError("tune: batch_size must be at least 2 (the other loci are the negatives) and steps at least 1")


class ViewSampler:
    """Pairs of views of random loci of the training genomes (see the module doc); each genome is
    drawn equally often, its contigs in proportion to their length."""

    def __init__(self, genomes: Sequence[Any], cfg: TuneConfig, rng: np.random.Generator, margin: int = 32):
        self.cfg, self.rng, self.margin = cfg, rng, margin
        self.span = cfg.seq_bp + cfg.max_shift + margin
        self.regions = [(g, c, n) for g in genomes for c, n in g.contigs.items() if n >= self.span]
        if not self.regions:
            names = ", ".join(Path(g.path).name for g in genomes)
            raise GenembedError(f"{names}: no contig is as long as a training locus ({self.span} bp: seq_bp + max_shift"
                                f" + {margin}); lower --seq-bp")
        # each genome drawn as often as the others (a small one is not drowned by a large one), its contigs by length
        weights = np.array([n - self.span + 1 for _, _, n in self.regions], dtype=float)
        owner = np.array([id(g) for g, _, _ in self.regions])
        for g in set(owner.tolist()):
            weights[owner == g] /= weights[owner == g].sum()
        self.p = weights / weights.sum()

    def _locus(self, region: int | None = None, gc: float | None = None) -> tuple[bytes, int]:
        """A random locus (of ``region``, the index of a contig, where given) and its contig's index;
        with ``gc``, one whose GC content is within 1% of it (else the closest of 64 tries)."""
        from genembed.data.windows import n_fraction

        closest: tuple[float, bytes, int] | None = None
        for _ in range(1000 if gc is None else 64):
            r = int(self.rng.choice(len(self.regions), p=self.p)) if region is None else region
            g, contig, length = self.regions[r]
            start = int(self.rng.integers(0, length - self.span + 1))
            seq = g.fetch(contig, start, start + self.span)
            if n_fraction(seq) > 0.1:
                continue
            if gc is None:
                return seq, r
            off = abs(_gc(seq) - gc)
            if off <= 0.01:
                return seq, r
            if closest is None or off < closest[0]:
                closest = (off, seq, r)
        if closest is not None:
            return closest[1], closest[2]
        raise GenembedError(f"tune: 1,000 random {self.span}-bp loci all hold more than 10% N; check the genomes")

    def _view(self, seq: bytes, offset: int, max_rate: float) -> bytes:
        from genembed.data.windows import mutate
        from genembed.encode.tokenize import reverse_complement

        cfg = self.cfg
        tail = seq[offset : offset + cfg.seq_bp + self.margin]
        view = mutate(tail, cfg.seq_bp, float(self.rng.uniform(0, max_rate)), cfg.indel_share, self.rng)
        return reverse_complement(view) if self.rng.random() < 0.5 else view

    def max_rate(self, step: int) -> float:
        """The largest mutation rate at ``step``: ramps from 10% (or less) to ``max_mutation`` over the
        first ``mutation_warmup`` of the steps."""
        cfg = self.cfg
        ramp = cfg.mutation_warmup * cfg.steps
        start = min(0.10, cfg.max_mutation)
        return cfg.max_mutation if ramp < 1 else start + (cfg.max_mutation - start) * min(1.0, step / ramp)

    def pairs(self, n: int, step: int = 0) -> tuple[list[bytes], list[bytes]]:
        """Two views of each of ``n`` loci; a ``hard_negatives`` share of the loci come in twos, the
        second from the same contig with the same GC content (within 1%), so that composition alone
        cannot tell them apart."""
        rate = self.max_rate(step)
        loci: list[bytes] = []
        while len(loci) < n:
            seq, region = self._locus()
            loci.append(seq)
            if len(loci) < n and self.rng.random() < self.cfg.hard_negatives:
                loci.append(self._locus(region, _gc(seq))[0])
        first, second = [], []
        for seq in loci:
            shift = int(self.rng.integers(0, self.cfg.max_shift + 1))
            a, b = (0, shift) if self.rng.random() < 0.5 else (shift, 0)
            first.append(self._view(seq, a, 0.0 if self.cfg.mutate_one else rate))
            second.append(self._view(seq, b, rate))
        return first, second


def _gc(seq: bytes) -> float:
    from genembed.data.windows import gc_content

    return float(gc_content([seq])[0, 0])


def new_encoder(folder: Path, cfg: TuneConfig) -> None:
    """A freshly initialised genembed convolutional encoder and its tokenizer, saved to ``folder``."""
    import torch

    from genembed.encode.convnet import GenembedConvConfig, GenembedConvModel, complement_ids
    tok = build_tokenizer(1, 4096, wrap=False)
    torch.manual_seed(cfg.seed)
    model = GenembedConvModel(GenembedConvConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
        num_hidden_layers=cfg.layers, kernel_size=cfg.kernel_size, complement=complement_ids(tok.get_vocab()),
        pad_token_id=tok.pad_token_id, max_position_embeddings=tok.model_max_length,
        kmer_size=cfg.kmer_size, base_ids=[tok.get_vocab()[b] for b in "ACGT"],
    ))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def nt_xent(a, b, temperature: float):
    """SimCLR's loss for L2-normalised pairs ``a[i]``/``b[i]``, all other rows negatives; also
    the share of rows whose partner is their nearest row. (A queue of earlier steps' views as more
    negatives, without MoCo's momentum encoder, kept the loss above chance for 50 steps where in-batch
    negatives alone halved it: measured, then left out.)"""
    import torch

    z = torch.cat([a, b])
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    loss = torch.nn.functional.cross_entropy(sim, target)
    accuracy = (sim.argmax(1) == target).float().mean()
    return loss, accuracy


def tune(fastas: Sequence[str | Path] | Callable[[], Sequence[Path]], out: str | Path, cfg: TuneConfig = TuneConfig(),
         model: str | None = None,
         tokenizer: Any = None, trust_remote_code: bool = False, device: str = "auto", revision: str | None = None,
         checkpoint: str | Path | None = None) -> dict:
    """Train (``model``: a folder or hub id to start from; None: a new genembed encoder) and save
    the tuned model with its tokenizer, ``training.json`` and a model card to ``out``.
    ``tokenizer`` is a :class:`~genembed.encode.tokenize.TokenizerSpec` (default: the model's own).
    ``fastas``: prepared (bgzip + faidx) genomes, or a function giving them, called once the model
    and the options are checked (the CLI prepares its copies then).
    ``checkpoint``: a folder where the run's state is saved every :data:`CHECKPOINT_EVERY` steps
    and when it stops; a run given a folder holding a state of the same configuration resumes it
    (``max_minutes`` then bounds each run, ``steps`` the whole)."""
    import tempfile

    import torch

    from genembed.encode.device import native_bf16, pick_device
    from genembed.encode.embed import _accepts, _hidden, mean_pool, pad_rows, special_token_ids
    from genembed.data.genome import Genome
    from genembed.encode.models import ModelSpec, load_model, load_tokenizer, max_tokens, resolve
    from genembed.encode.tokenize import TokenizerSpec, check_lengths, make_tokenizer

    tokenizer = tokenizer or TokenizerSpec("hf")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    with tempfile.TemporaryDirectory() as scratch:
        if model is None:
            folder = Path(scratch) / "init"
            new_encoder(folder, cfg)
            spec = ModelSpec(str(folder))
        else:
            spec = ModelSpec(model, revision, trust_remote_code)
            folder = resolve(spec)
        hf_tok = load_tokenizer(folder, spec)
        net = load_model(folder, spec)
        limit = max_tokens(folder, hf_tok)
    dev = pick_device(device)
    net.to(dev).train()
    tok = make_tokenizer(tokenizer, hf_tok)
    takes_mask = _accepts(net.forward, "attention_mask")
    special = torch.tensor(special_token_ids(hf_tok), dtype=torch.long, device=dev)
    pad = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
    longest = len(tok.encode_batch([b"ACGT" * (cfg.seq_bp // 4 + 1)])[0])  # a clean view, before any genome is read
    if longest > limit:
        raise GenembedError(f"tune: views of {cfg.seq_bp} bp take about {longest} tokens, but {spec.source} takes at most"
                            f" {limit}; lower --seq-bp")
    fastas = list(fastas() if callable(fastas) else fastas)
    genomes = [Genome(Path(f)) for f in fastas]
    sampler = ViewSampler(genomes, cfg, rng)
    lr = cfg.learning_rate or (NEW_LR if model is None else TUNE_LR)
    opt, sched = warmup_cosine(net, lr, cfg.steps)
    bf16 = native_bf16(dev)
    losses: list[float] = []
    accuracies: list[float] = []
    step, spent = 0, 0.0
    state = Path(checkpoint) / "state.pt" if checkpoint else None
    fingerprint = {"config": asdict(cfg) | {"max_minutes": None}, "model": model,  # each run has its own time
                   "fastas": [Path(f).name for f in fastas]}
    if state is not None and state.is_file():
        saved = torch.load(state, map_location=dev, weights_only=False)
        if not _same_run(saved["fingerprint"], fingerprint):
            raise GenembedError(f"{state}: a checkpoint of another run (configuration, model or genomes differ);"
                                " give another --checkpoint folder")
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        step, spent, losses, accuracies = (saved[k] for k in ("step", "seconds", "losses", "accuracies"))
        log.info("resumed %s at step %d (%.0f s trained)", state, step, spent)

    def save_state() -> None:
        state.parent.mkdir(parents=True, exist_ok=True)
        tmp = state.with_name(f".{state.name}.tmp")
        torch.save({"fingerprint": fingerprint, "model": net.state_dict(), "optimizer": opt.state_dict(),
                    "schedule": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "step": step, "seconds": spent + time.monotonic() - started,
                    "losses": losses, "accuracies": accuracies}, tmp)
        tmp.replace(state)

    started = time.monotonic()
    while step < cfg.steps and time.monotonic() - started < cfg.max_minutes * 60:
        first, second = sampler.pairs(cfg.batch_size, step)
        rows = tok.encode_batch(first + second)
        check_lengths(rows, limit, f"tune: views of {cfg.seq_bp} bp")
        lengths = torch.tensor([len(r) for r in rows], device=dev)
        ids = torch.from_numpy(pad_rows(rows, pad)).to(dev)
        real = torch.arange(ids.shape[1], device=dev)[None, :] < lengths[:, None]
        with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            padded = takes_mask and bool((lengths < ids.shape[1]).any())  # no mask when none is needed: faster kernels
            hidden = _hidden(net(input_ids=ids, attention_mask=real.long()) if padded else net(input_ids=ids), -1)
        z = torch.nn.functional.normalize(mean_pool(hidden, ids, real, special), dim=1)
        loss, accuracy = nt_xent(z[: cfg.batch_size], z[cfg.batch_size :], cfg.temperature)
        losses.append(optimizer_step(net, loss, opt, sched))
        accuracies.append(accuracy.item())
        step += 1
        if step % 25 == 0 or step == 1:
            log.info("step %d loss %.4f in-batch top-1 %.3f (%.0f s)", step, np.mean(losses[-25:]),
                     np.mean(accuracies[-25:]), time.monotonic() - started)
        if state is not None and step % CHECKPOINT_EVERY == 0:
            save_state()
    if state is not None:
        save_state()
    for g in genomes:
        g.close()
    if not losses:
        raise GenembedError("tune: no training step ran (max_minutes too small?)")
    stats = {
        "objective": "contrastive (NT-Xent, in-batch negatives)",
        "base_model": model or "new genembed-conv encoder",
        "tokenizer": tokenizer.describe(),
        "steps": step,
        "seconds": round(spent + time.monotonic() - started, 1),
        "finished": step >= cfg.steps,
        "first_loss": round(losses[0], 4),
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "final_in_batch_top1": round(float(np.mean(accuracies[-50:])), 4),
        "chance_loss": round(math.log(2 * cfg.batch_size - 1), 4),
        "genomes": {Path(g.path).name: sum(g.contigs.values()) for g in genomes},
        "config": asdict(cfg) | {"learning_rate": lr},
        "bf16_autocast": bf16,
        "device": dev,
        "loss_curve": [round(float(np.mean(losses[i : i + 50])), 4) for i in range(0, len(losses), 50)],
    }
    net.to("cpu").float().eval()
    _save_folder(net, hf_tok, Path(out), stats, model_card(stats))
    return stats


def _same_run(saved: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether a checkpoint's run is this one: the same model, genomes and settings (a setting that
    a later genembed added counts as its default)."""
    defaults = asdict(TuneConfig()) | {"max_minutes": None}
    a, b = saved["config"], now["config"]
    return {k: v for k, v in saved.items() if k != "config"} == {k: v for k, v in now.items() if k != "config"} \
        and all(a.get(k, defaults.get(k)) == b.get(k, defaults.get(k)) for k in set(a) | set(b))


def model_card(stats: dict[str, Any], evaluation: str = "") -> str:
    c = stats["config"]
    data = "\n".join(f"- `{name}`: {n:,} bp" for name, n in stats["genomes"].items())
    if c.get("kmer_projection"):
        return _projection_card(stats, data, evaluation)
    title = ("genembed-conv" if stats["base_model"].startswith("new") else Path(stats["base_model"]).name
             + (f" + a fused {c['kmer_size']}-mer branch" if c.get("kmer_channels") else " (tuned)"))
    return f"""# {title}

DNA window embeddings for similarity search, trained by `genembed tune` (base: {stats['base_model']}).

## Recipe
- Contrastive (SimCLR NT-Xent, temperature {c['temperature']}, in-batch negatives{_extras(c)}): two views per
  locus, {c['seq_bp']}-bp windows shifted by 0-{c['max_shift']} bp, each with random substitutions
  at 0-{c['max_mutation']:.0%} plus indels ({c['indel_share']:g} x as many, 1-3 bp){' in one view of the two' if c.get('mutate_one') else ''},
  each on a random strand.
- {stats['steps']} steps of {c['batch_size']} loci ({2 * c['batch_size']} views), AdamW (lr {c['learning_rate']},
  warm-up then cosine decay), seed {c['seed']}, bf16 autocast: {stats['bf16_autocast']}, {stats['seconds']} s on {stats['device']}.
- Loss {stats['first_loss']} at step 1 -> {stats['final_loss']} (mean of the last 50 steps; chance is
  {stats['chance_loss']}); in-batch top-1 {stats['final_in_batch_top1']}.
- Tokenizer: {stats['tokenizer']}; pooling: mean over real tokens.
{_fused(c)}{_architecture(stats)}
## Training data
{data}
{evaluation}"""


def _projection_card(stats: dict[str, Any], data: str, evaluation: str) -> str:
    c, k = stats["config"], stats["config"]["kmer_size"]
    return f"""# {Path(stats['base_model']).name} + a {k}-mer projection

DNA window embeddings for similarity search, made by `genembed tune --kmer-projection` (base: {stats['base_model']}).

## Recipe
- The base encoder's convolutional channels, unchanged, beside a block of {c['kmer_channels']} channels: a table with
  one row per strand-canonical {k}-mer, looked up at every position. Mean-pooled, that block is the window's
  {k}-mer frequencies times the table.
- The table is not trained. It is a Gaussian random projection (seed {c['seed']}), each k-mer's row weighted by
  (its mean frequency / the mean) ** -{stats['idf_power']}, an IDF-like weight. The frequencies come from
  {stats['projection_windows']:,} {c['seq_bp']}-bp windows of the genomes below. Common k-mers then count less than
  rare ones, which tell two loci apart (`genembed.encode.kmerbranch.projection_table`).
- The k-mer block carries {c['kmer_share']:.0%} of a typical window vector's squared length, the convolutional
  block the rest.
- Tokenizer: {stats['tokenizer']}; pooling: mean over real tokens. Strand-invariant (canonical k-mers, and the
  encoder reads both strands).

## Data (for the k-mer weights and the blocks' scales)
{data}
{evaluation}"""


def _extras(c: dict[str, Any]) -> str:
    """The recipe's options beyond in-batch negatives, as the model card names them."""
    parts = []
    if c.get("hard_negatives"):
        parts.append(f"{c['hard_negatives']:.0%} of the loci drawn in twos of the same contig and GC content (hard negatives)")
    if c.get("mutation_warmup"):
        parts.append(f"the largest mutation rate ramped up from 10% over the first {c['mutation_warmup']:.0%} of the steps")
    return "; " + "; ".join(parts) if parts else ""


def _branch(c: dict[str, Any]) -> str:
    k = c.get("kmer_size")
    return f", and a {k}-mer branch (a learned vector per centred {k}-mer, added to the last layer)" if k else ""


def _fused(c: dict[str, Any]) -> str:
    if not c.get("kmer_channels"):
        return ""
    return (f"- Only the fused k-mer branch was trained (`genembed.encode.kmerbranch`), the encoder frozen: a table of "
            f"{c['kmer_channels']} channels per strand-canonical {c['kmer_size']}-mer, looked up at every position beside the "
            f"convolutional channels; mean-pooled, that block is the window's {c['kmer_size']}-mer frequencies times the "
            f"table, and it carries {c['kmer_share']:.0%} of a typical window vector's squared length.\n")


def _architecture(stats: dict[str, Any]) -> str:
    if not stats["base_model"].startswith("new"):
        return ""
    c = stats["config"]
    return f"""
## Architecture and use
- genembed-conv: single-nucleotide tokens (A, C, G, T, N), a {c['kernel_size']}-bp convolution stem, {c['layers']}
  blocks of {c['kernel_size']}-bp depthwise convolution + feed-forward (hidden size {c['hidden_size']}), layer norm
  and per-channel centring{_branch(c)}; every window runs on both strands and each position reports the mean, so a
  window and its reverse complement embed identically. Shift-equivariant (no k-mer frame).
- In genembed: `model.path` = this folder, `tokenizer: {{kind: kmer, k: 1}}` (or `kind: hf`), `embed.pooling: mean`,
  `strands: forward` (the model already sees both strands).
- Elsewhere: `import genembed.encode.convnet` registers `model_type: genembed-conv` with transformers' Auto classes, then
  `AutoModel.from_pretrained(folder)` loads it without `trust_remote_code`.
"""


def write_card(folder: str | Path, evaluation: str) -> None:
    """Rewrite a tuned model's card with an evaluation section (the model's files are unchanged)."""
    folder = Path(folder)
    stats = json.loads((folder / "training.json").read_text())
    (folder / "README.md").write_text(model_card(stats, evaluation))


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
    umask = os.umask(0)
    os.umask(umask)
    for f in tmp.iterdir():  # as any new file (the weights came out 600: written through a private temporary file)
        f.chmod(0o666 & ~umask)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
