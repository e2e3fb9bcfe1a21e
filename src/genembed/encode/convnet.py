"""genembed's own DNA encoder: a small convolutional network over single nucleotides whose
outputs are reverse-complement invariant by construction, registered with transformers' Auto
classes so that ``AutoModel.from_pretrained`` loads it without ``trust_remote_code``.

Shape: a nucleotide embedding, a full convolution stem, then ConvNeXt-style blocks (a depthwise
convolution, layer norm, a two-layer feed-forward, a residual connection), a layer norm and
per-channel centring (see :class:`_Center`). With ``kmer_size`` k, a k-mer branch adds to the last
layer a learned vector per centred k-mer: mean-pooled, that is a learned projection of the window's
k-mer profile (strand-canonical, as the model averages both strands), beside the convolutions. Its tokenizer is :func:`genembed.encode.tune.build_tokenizer`
with ``k = 1`` and no start or end token. Convolutions
are shift-equivariant, so a window and a shifted copy share the features of their common bases
(no k-mer frame, unlike non-overlapping k-mer tokens). With ``rc_invariant`` the network runs on
each row and on its reverse complement, and position ``i`` reports the mean of the forward
features at ``i`` and the reverse-complement features of the same base: any mean over positions
is then identical for a sequence and its reverse complement.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

MODEL_TYPE = "genembed-conv"


class GenembedConvConfig(PretrainedConfig):
    """Sizes of the network and the token ids it needs (padding, and each token's complement)."""

    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 10, hidden_size: int = 128, embedding_size: int = 16, stem_kernel: int = 9,
                 kernel_size: int = 9, num_hidden_layers: int = 4, intermediate_size: int = 256,
                 complement: Sequence[int] | None = None, rc_invariant: bool = True,
                 max_position_embeddings: int = 4096, pad_token_id: int = 0, layer_norm_eps: float = 1e-5,
                 kmer_size: int = 0, base_ids: Sequence[int] | None = None, kmer_channels: int = 0,
                 hidden_scale: float = 1.0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size, self.hidden_size, self.embedding_size = vocab_size, hidden_size, embedding_size
        self.stem_kernel, self.kernel_size = stem_kernel, kernel_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.complement = list(complement) if complement is not None else list(range(vocab_size))
        self.rc_invariant = rc_invariant
        self.max_position_embeddings = max_position_embeddings
        self.layer_norm_eps = layer_norm_eps
        # the k-mer branch (kmer_size 0: none): each position's centred k-mer looked up in a table of 4^k
        # vectors; base_ids are the token ids of A, C, G and T. With kmer_channels 0 the vectors are added
        # to the last layer's states (k odd); otherwise they are channels of their own after the
        # convolutional ones, which are scaled by hidden_scale: mean-pooled, that block is the window's
        # k-mer frequencies times the table (the fused design of issue 28)
        if kmer_size and (not base_ids or len(base_ids) != 4 or (kmer_size % 2 == 0 and not kmer_channels)):
            raise ValueError("kmer_size needs base_ids naming the token ids of A, C, G and T, and must be odd"
                             " unless the k-mer branch has channels of its own (kmer_channels)")
        self.kmer_size, self.base_ids = kmer_size, list(base_ids or [])
        self.kmer_channels, self.hidden_scale = kmer_channels, hidden_scale


class _Block(nn.Module):
    """Depthwise convolution -> layer norm -> feed-forward, added to the input.

    The convolution is a 2-D one of height 1 over a channels-last view of the ``[rows, positions,
    channels]`` states: oneDNN's fast depthwise kernel, about 30x faster in bf16 on a CPU than
    ``Conv1d`` on the transposed tensor (measured)."""

    def __init__(self, cfg: GenembedConvConfig):
        super().__init__()
        k = cfg.kernel_size
        self.conv = nn.Conv2d(cfg.hidden_size, cfg.hidden_size, (1, k), padding=(0, (k - 1) // 2),
                              groups=cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.up = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor, keep: torch.Tensor | None, crop: slice = slice(None)) -> torch.Tensor:
        """``crop``: the output positions wanted (the rest of the feed-forward is skipped)."""
        y = self.conv(h.transpose(1, 2)[:, :, None, :])[:, :, 0, :].transpose(1, 2)[:, crop]
        h = h[:, crop] + self.down(nn.functional.gelu(self.up(self.norm(y))))
        return h if keep is None else h * keep


class _Center(nn.Module):
    """Batch normalisation without scale or shift, over real positions only: each output channel
    has mean 0 and variance 1 over the training windows (running statistics at inference). Mean
    pooling then adds up what differs between windows instead of a direction they all share (the
    anisotropy of mean-pooled language-model embeddings)."""

    def __init__(self, channels: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, h: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if self.training:
            x = h.float()
            flat = x.reshape(-1, x.shape[-1]) if keep is None else x[keep[..., 0].bool()]
            mean, var = flat.mean(0), flat.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
            out = ((x - mean) * torch.rsqrt(var + self.eps)).to(h.dtype)
        else:  # statistics in fp32, applied in the compute precision
            scale = torch.rsqrt(self.running_var + self.eps)
            out = h * scale.to(h.dtype) - (self.running_mean * scale).to(h.dtype)
        return out if keep is None else out * keep


class GenembedConvPreTrainedModel(PreTrainedModel):
    config_class = GenembedConvConfig
    base_model_prefix = "genembed_conv"
    _no_split_modules: list[str] = []

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding) and module is getattr(self, "kmer", None):
            nn.init.normal_(module.weight, std=0.02)  # the k-mer branch starts small beside the convolutions
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=1.0)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class GenembedConvModel(GenembedConvPreTrainedModel):
    """The encoder: ``input_ids`` (and optionally ``attention_mask``) -> hidden states per position."""

    def __init__(self, config: GenembedConvConfig):
        super().__init__(config)
        c = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.stem = nn.Conv1d(config.embedding_size, c, config.stem_kernel, padding=(config.stem_kernel - 1) // 2)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.center = _Center(c)
        if config.kmer_size:
            k = config.kmer_size
            # the last row: a k-mer with another token in it
            self.kmer = nn.Embedding(4**k + 1, config.kmer_channels or c, padding_idx=4**k)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    @property
    def receptive_field(self) -> int:
        """Positions each side of a position that its state depends on (every layer's half-kernel):
        a window's states away from its edges equal the whole sequence's (see :mod:`genembed.encode.scan`)."""
        c = self.config
        return max(c.stem_kernel // 2 + c.num_hidden_layers * (c.kernel_size // 2), c.kmer_size // 2)

    def _kmer_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Each position's centred k-mer as a number below 4^k; 4^k where the k-mer holds another
        token or runs past the row (so that a window's own ends cut it, as they cut the convolutions)."""
        k = self.config.kmer_size
        codes = torch.full_like(ids, 4)  # compared, not looked up: a buffer would not survive from_pretrained's meta init
        for j, token in enumerate(self.config.base_ids):
            codes = torch.where(ids == token, j, codes)
        codes = nn.functional.pad(codes, (k // 2, (k - 1) // 2), value=4)
        windows = codes.unfold(1, k, 1)  # [rows, positions, k]
        powers = 4 ** torch.arange(k - 1, -1, -1, device=ids.device)
        number = (windows.clamp(max=3) * powers).sum(-1)
        return torch.where((windows == 4).any(-1), torch.full_like(number, 4**k), number)

    def _encode(self, ids: torch.Tensor, keep: torch.Tensor | None, edge: tuple[int, bool] | None = None
                ) -> list[torch.Tensor]:
        """Hidden states after the stem and after each block ([rows, positions, channels]);
        ``keep`` zeroes padding (None: no padding). ``edge = (width, left)``: only what the first
        (``left``) or last ``width`` positions' last state depends on is computed; each state then
        holds those positions plus the reach of the layers above it."""
        e = self.embed(ids)
        h = self.stem((e if keep is None else e * keep).transpose(1, 2)).transpose(1, 2)
        h = h if keep is None else h * keep
        crops = [slice(None)] * (len(self.blocks) + 1)
        if edge is not None:
            width, left = edge
            half = self.config.kernel_size // 2
            spans = [width + half * (len(self.blocks) - i) for i in range(len(self.blocks) + 1)]
            crops = [slice(0, n) if left else slice(-n, None) for n in spans]
            h = h[:, crops[0]]
        states = [h]
        for block, crop in zip(self.blocks, crops[1:]):
            h = block(h, keep, crop)
            states.append(h)
        last = self.norm(h)
        if self.config.kmer_size and not self.config.kmer_channels:
            last = last + self.kmer(self._kmer_ids(ids))[:, crops[-1]].to(last.dtype)
        states[-1] = self.center(last, keep)
        if self.config.kmer_channels:  # padding and k-mers with other tokens look up the zero row
            kmers = self.kmer(self._kmer_ids(ids))[:, crops[-1]].to(last.dtype)
            states[-1] = torch.cat([states[-1] * self.config.hidden_scale, kmers], -1)
        return states

    def edge_states(self, input_ids: torch.Tensor, width: int, left: bool, layer: int = -1) -> torch.Tensor:
        """A layer's states at the first (``left``) or last ``width`` positions of each row, as
        :meth:`forward` gives them, computing only what they depend on (about 35% less than a whole
        row of ``2 * receptive_field``; :mod:`genembed.encode.scan` runs window edges this way). Rows hold
        real tokens only."""
        take, back = (slice(0, width), slice(-width, None)) if left else (slice(-width, None), slice(0, width))
        forward = self._encode(input_ids, None, (width, left))[layer][:, take]
        if not self.config.rc_invariant:
            return forward
        complement = torch.tensor(self.config.complement, dtype=torch.long, device=input_ids.device)
        reverse = self._encode(complement[input_ids.flip(1)], None, (width, not left))[layer][:, back].flip(1)
        return (forward + reverse) * 0.5

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None, **kwargs) -> BaseModelOutput:
        """Without ``attention_mask`` every position is real (no padding)."""
        keep = None if attention_mask is None else attention_mask[..., None].to(self.embed.weight.dtype)
        if not self.config.rc_invariant:
            states = self._encode(input_ids, keep)
        else:
            n = input_ids.shape[0]
            complement = torch.tensor(self.config.complement, dtype=torch.long, device=input_ids.device)
            if attention_mask is None:
                rc_ids = complement[input_ids.flip(1)]
                both = self._encode(torch.cat([input_ids, rc_ids]), None)
                realign = lambda s: s.flip(1)  # noqa: E731
            else:
                flip = _reverse_index(attention_mask.bool())
                rc_ids = complement[torch.gather(input_ids, 1, flip)]
                both = self._encode(torch.cat([input_ids, rc_ids]), torch.cat([keep, keep]))
                realign = lambda s: torch.gather(s, 1, flip[..., None].expand(-1, -1, s.shape[-1]))  # noqa: E731
            wanted = range(len(both)) if output_hidden_states else [len(both) - 1]
            states = [None] * len(both)
            for i in wanted:
                states[i] = (both[i][:n] + realign(both[i][n:])) * 0.5
        return BaseModelOutput(last_hidden_state=states[-1],
                               hidden_states=tuple(states) if output_hidden_states else None)


def _reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """Per row, the position each position maps to when the row's real (leading) part is reversed;
    padding positions map to themselves."""
    lengths = mask.long().sum(1, keepdim=True)
    pos = torch.arange(mask.shape[1], device=mask.device)[None, :]
    return torch.where(pos < lengths, lengths - 1 - pos, pos)


AutoConfig.register(MODEL_TYPE, GenembedConvConfig, exist_ok=True)
AutoModel.register(GenembedConvConfig, GenembedConvModel, exist_ok=True)


_PAIRS = {"A": "T", "C": "G", "G": "C", "T": "A"}


def complement_ids(vocab: dict[str, int]) -> list[int]:
    """For each token id, the id of its complement (A<->T, C<->G; every other token is its own)."""
    out = list(range(len(vocab)))
    for base, pair in _PAIRS.items():
        out[vocab[base]] = vocab[pair]
    return out
