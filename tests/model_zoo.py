"""Tiny, real (randomly initialised) models of each published DNA-model family, saved as Hugging Face
folders the way those models ship: vocabulary files, tokenizer classes and, for custom code, their
own ``modeling_*.py`` registered through ``auto_map``."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

KMERS6 = ["".join(p) for p in itertools.product("ACGT", repeat=6)]
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _save_bert(folder: Path, tok, seed: int) -> Path:
    """A tiny randomly initialised BERT masked LM over ``tok``'s vocabulary, saved with it."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), max_position_embeddings=512, pad_token_id=tok.pad_token_id, **TINY)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def dnabert(folder: Path, seed: int = 0) -> Path:
    """DNABERT (v1): BERT, BertTokenizer over a vocab.txt of overlapping 6-mers, 512 positions."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *KMERS6]) + "\n")
    tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False, model_max_length=512)
    return _save_bert(folder, tok, seed)


def nucleotide_transformer_v1(folder: Path, seed: int = 0) -> Path:
    """Nucleotide Transformer v1: ESM, EsmTokenizer over non-overlapping 6-mers plus single bases and N;
    1002 positions with padding index 1, so at most 1000 tokens."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    folder.mkdir(parents=True)
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *KMERS6, "A", "T", "C", "G", "N"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = EsmTokenizer(str(folder / "vocab.txt"), model_max_length=1000)
    torch.manual_seed(seed)
    cfg = EsmConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=1002, pad_token_id=1, mask_token_id=2,
                    position_embedding_type="absolute", token_dropout=False, emb_layer_norm_before=False)
    EsmForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def bpe_tokenizer(sequence: bytes):
    """A byte-pair vocabulary learnt on genome sequence (variable tokens per window), as a fast tokenizer."""
    from tokenizers import Tokenizer, models, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special, initial_alphabet=list("ACGTN"),
                                  show_progress=False)
    text = sequence.decode()
    bpe.train_from_iterator((text[i : i + 1000] for i in range(0, len(text), 1000)), trainer)
    bpe.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def bpe_bert(folder: Path, sequence: bytes, seed: int = 0) -> Path:
    """GROVER-like: a BPE tokenizer and a plain BERT encoder."""
    folder.mkdir(parents=True)
    return _save_bert(folder, bpe_tokenizer(sequence), seed)


DNABERT2_CODE = '''"""A DNABERT-2-like model: its own code, whose forward returns a plain tuple
(last hidden state, pooled output) instead of a ModelOutput, as DNABERT-2's bert_layers.py does."""
from transformers import BertConfig, BertModel


class Dnabert2Config(BertConfig):
    model_type = "genembed-test-dnabert2"


class Dnabert2Model(BertModel):
    config_class = Dnabert2Config

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None,
                output_all_encoded_layers=False, **kwargs):
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids)
        return out.last_hidden_state, out.pooler_output
'''


def dnabert2_like(folder: Path, sequence: bytes, seed: int = 3) -> Path:
    """DNABERT-2-like: BPE tokens, custom code (trust_remote_code) registered as AutoModel, tuple outputs."""
    import torch

    folder.mkdir(parents=True)
    (folder / "modeling_dnabert2.py").write_text(DNABERT2_CODE)
    module = _import(folder / "modeling_dnabert2.py", "genembed_test_modeling_dnabert2")
    tok = bpe_tokenizer(sequence)
    torch.manual_seed(seed)
    cfg = module.Dnabert2Config(vocab_size=len(tok), max_position_embeddings=512, pad_token_id=tok.pad_token_id, **TINY)
    module.Dnabert2Model(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    _register_auto_map(folder, {"AutoConfig": "modeling_dnabert2.Dnabert2Config", "AutoModel": "modeling_dnabert2.Dnabert2Model"})
    return folder


HYENA_CODE = '''"""A HyenaDNA-like model: character tokens, causal long convolutions, and a forward pass that takes
no attention mask at all (as HyenaDNA's own code)."""
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithNoAttention


class HyenaLikeConfig(PretrainedConfig):
    model_type = "genembed-test-hyena"

    def __init__(self, vocab_size=12, d_model=32, n_layer=2, kernel_size=16, max_seq_len=1026, both_strands=False,
                 fft=False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.d_model, self.n_layer = vocab_size, d_model, n_layer
        self.kernel_size, self.max_seq_len, self.both_strands, self.fft = kernel_size, max_seq_len, both_strands, fft


class HyenaLikeModel(PreTrainedModel):
    config_class = HyenaLikeConfig
    base_model_prefix = "hyena"

    def __init__(self, config):
        super().__init__(config)
        d = config.d_model
        self.embeddings = nn.Embedding(config.vocab_size, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, config.kernel_size, groups=d) for _ in range(config.n_layer))
        self.mlps = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
                                  for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(d)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.2)

    def forward(self, input_ids, output_hidden_states=None, return_dict=None):
        if self.config.both_strands:  # Caduceus-PS-like: the reverse-complement strand's channels follow
            complement = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11], device=input_ids.device)
            fwd = self._strand(input_ids, output_hidden_states)
            rev = self._strand(complement[input_ids].flip(1), output_hidden_states)
            return BaseModelOutputWithNoAttention(last_hidden_state=torch.cat(
                [fwd.last_hidden_state, rev.last_hidden_state.flip(1)], -1))
        return self._strand(input_ids, output_hidden_states)

    def _strand(self, input_ids, output_hidden_states):
        h = self.embeddings(input_ids)
        states = [h]
        for conv, mlp in zip(self.convs, self.mlps):
            if self.config.fft:  # HyenaDNA's long convolution: through the FFT (no bf16 kernel; fp16 at 2^n only)
                n = 2 * h.shape[1]
                y = torch.fft.irfft(torch.fft.rfft(h.transpose(1, 2), n=n) * torch.fft.rfft(conv.weight[:, 0], n=n), n=n)
                h = h + torch.tanh(y[..., : h.shape[1]] + conv.bias[:, None]).transpose(1, 2)
            else:
                x = F.pad(h.transpose(1, 2), (conv.kernel_size[0] - 1, 0))  # causal: no token sees the next
                h = h + torch.tanh(conv(x)).transpose(1, 2)
            h = h + mlp(h)
            states.append(h)
        h = self.norm(h)
        return BaseModelOutputWithNoAttention(last_hidden_state=h,
                                              hidden_states=tuple(states[:-1]) + (h,) if output_hidden_states else None)
'''


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _register_auto_map(folder: Path, auto_map: dict[str, str]) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = auto_map
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))


def hyena_like(folder: Path, seed: int = 0, both_strands: bool = False, fft: bool = False) -> Path:
    """HyenaDNA-like: custom code (trust_remote_code), character tokens with [SEP] appended and left
    padding, a causal model whose forward takes no attention mask. ``both_strands`` makes it
    Caduceus-PS-like: 2 x d_model output channels, the second half from the reverse complement;
    ``fft``: its long convolutions run through the FFT, as HyenaDNA's do."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True)
    (folder / "modeling_hyena.py").write_text(HYENA_CODE)
    module = _import(folder / "modeling_hyena.py", "genembed_test_modeling_hyena")
    vocab = {t: i for i, t in enumerate(["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]",
                                         "A", "C", "G", "T", "N"])}
    chars = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    chars.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    chars.post_processor = processors.TemplateProcessing(single="$A [SEP]", special_tokens=[("[SEP]", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=chars, unk_token="[UNK]", pad_token="[PAD]", sep_token="[SEP]",
                                  cls_token="[CLS]", mask_token="[MASK]", padding_side="left", model_max_length=1026)
    torch.manual_seed(seed)
    module.HyenaLikeModel(module.HyenaLikeConfig(vocab_size=len(vocab), both_strands=both_strands, fft=fft)
                          ).save_pretrained(folder)
    tok.save_pretrained(folder)
    _register_auto_map(folder, {"AutoConfig": "modeling_hyena.HyenaLikeConfig", "AutoModel": "modeling_hyena.HyenaLikeModel"})
    return folder


NT2_CODE = '''"""A DNA model that ships its own code, registered only as a masked LM (like Nucleotide Transformer v2)."""
from transformers import BertConfig, BertForMaskedLM


class DnaConfig(BertConfig):
    model_type = "genembed-test-dna"


class DnaForMaskedLM(BertForMaskedLM):
    config_class = DnaConfig
'''


def masked_lm_custom_code(folder: Path, seed: int = 1) -> Path:
    """Nucleotide Transformer v2-like: custom code registered only as AutoModelForMaskedLM, 6-mers."""
    import torch

    from genembed.encode.tune import build_tokenizer

    folder.mkdir(parents=True)
    (folder / "modeling_dna.py").write_text(NT2_CODE)
    module = _import(folder / "modeling_dna.py", "genembed_test_modeling_dna")
    torch.manual_seed(seed)
    tok = build_tokenizer(6, 512)
    cfg = module.DnaConfig(vocab_size=len(tok), max_position_embeddings=512, pad_token_id=tok.pad_token_id, **TINY)
    module.DnaForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    _register_auto_map(folder, {"AutoConfig": "modeling_dna.DnaConfig", "AutoModelForMaskedLM": "modeling_dna.DnaForMaskedLM"})
    return folder


MEMORY_LIMITED_CODE = '''"""A BERT whose device holds at most ``max_batch_tokens`` tokens per batch: above that its forward
raises torch.OutOfMemoryError (or, with ``error: runtime``, the RuntimeError cuBLAS raises), as a GPU
does when a batch does not fit."""
import torch
from transformers import BertConfig, BertModel


class LimitedConfig(BertConfig):
    model_type = "genembed-test-limited"

    def __init__(self, max_batch_tokens=600, error="torch", **kwargs):
        super().__init__(**kwargs)
        self.max_batch_tokens, self.error = max_batch_tokens, error


class LimitedModel(BertModel):
    config_class = LimitedConfig

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if input_ids.numel() > self.config.max_batch_tokens:
            if self.config.error == "runtime":  # what cuBLAS and older torch raise
                raise RuntimeError("CUDA error: out of memory")
            raise torch.OutOfMemoryError(f"out of memory: {input_ids.numel()} tokens in one batch")
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
'''


def memory_limited(folder: Path, max_batch_tokens: int, seed: int = 2, error: str = "torch") -> Path:
    """Custom code: a BERT that runs out of memory on batches above ``max_batch_tokens`` tokens
    (``error``: ``torch``, torch.OutOfMemoryError; ``runtime``, a RuntimeError saying so)."""
    import torch

    from genembed.encode.tune import build_tokenizer

    folder.mkdir(parents=True)
    (folder / "modeling_limited.py").write_text(MEMORY_LIMITED_CODE)
    module = _import(folder / "modeling_limited.py", "genembed_test_modeling_limited")
    torch.manual_seed(seed)
    tok = build_tokenizer(6, 512)
    cfg = module.LimitedConfig(max_batch_tokens=max_batch_tokens, error=error, vocab_size=len(tok), max_position_embeddings=512,
                               pad_token_id=tok.pad_token_id, **TINY)
    module.LimitedModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    _register_auto_map(folder, {"AutoConfig": "modeling_limited.LimitedConfig", "AutoModel": "modeling_limited.LimitedModel"})
    return folder


TRITON_KERNEL_CODE = '''"""A stand-in for DNABERT-2's flash_attn_triton.py on a CUDA build of torch: Triton 3 removed the
API it was written for, so its kernel fails to compile at the first call."""


def flash_attn_qkvpacked_func(*args, **kwargs):
    raise RuntimeError("triton: kernel compilation failed (tl.dot got an unexpected keyword argument 'trans_b')")
'''

DNABERT2_TRITON_CODE = '''"""DNABERT-2's bert_layers.py pattern: the Triton flash-attention kernel is imported when it can be,
and used whenever it is not None; otherwise the model's own standard attention runs."""
import torch
from transformers import BertConfig, BertModel

try:
    from .flash_attn_triton import flash_attn_qkvpacked_func
except ImportError:
    flash_attn_qkvpacked_func = None


class Dnabert2Config(BertConfig):
    model_type = "genembed-test-dnabert2-triton"


class Dnabert2Model(BertModel):
    config_class = Dnabert2Config

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, **kwargs):
        if flash_attn_qkvpacked_func is not None:
            flash_attn_qkvpacked_func(input_ids)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output
'''


def dnabert2_with_triton_kernel(folder: Path, sequence: bytes, seed: int = 3) -> Path:
    """DNABERT-2-like custom code that bundles a Triton flash-attention kernel which fails, as DNABERT-2's
    does on CUDA builds of torch (Triton 3): loaded through transformers' remote-code path, so the
    kernel module is imported beside the model's."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True)
    (folder / "bert_layers.py").write_text(DNABERT2_TRITON_CODE)
    (folder / "flash_attn_triton.py").write_text(TRITON_KERNEL_CODE)
    tok = bpe_tokenizer(sequence)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(tok), max_position_embeddings=512, pad_token_id=tok.pad_token_id, **TINY)
              ).save_pretrained(folder)
    tok.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "genembed-test-dnabert2-triton"
    (folder / "config.json").write_text(json.dumps(config))
    _register_auto_map(folder, {"AutoConfig": "bert_layers.Dnabert2Config", "AutoModel": "bert_layers.Dnabert2Model"})
    return folder
