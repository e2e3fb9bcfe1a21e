"""genembed tune: contrastive training end to end, for a new genembed encoder and for every model
family of the tiny zoo that has a pooled output; the tuned folder is used like any other model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import model_zoo
from genembed.encode.embed import EmbedSettings, Embedder
from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer
from genembed.encode.tune import TuneConfig, ViewSampler, nt_xent, tune

SMALL = TuneConfig(seq_bp=120, max_shift=40, batch_size=8, steps=3, hidden_size=16, layers=1)


def test_views_of_a_locus_share_its_sequence(prepared_slice):
    from genembed.data.genome import Genome

    g = Genome(prepared_slice)
    sampler = ViewSampler([g], TuneConfig(seq_bp=200, max_shift=50, max_mutation=0.0), np.random.default_rng(0))
    first, second = sampler.pairs(20)
    g.close()
    assert all(len(s) == 200 for s in first + second)
    from genembed.encode.tokenize import reverse_complement

    def shared(a: bytes, b: bytes) -> bool:  # unmutated views overlap by >= 150 bp, on either strand
        return any(x[i : i + 150] in y for x in (a, reverse_complement(a)) for y in (b,) for i in (0, 50))

    assert all(shared(a, b) for a, b in zip(first, second))


def test_nt_xent_is_low_when_pairs_match_and_chance_when_they_do_not():
    import torch

    a = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    matched, acc = nt_xent(a, a, 0.05)
    shuffled, _ = nt_xent(a, a[torch.randperm(16)], 0.05)
    assert acc.item() == 1.0 and matched.item() < shuffled.item()
    flat = torch.nn.functional.normalize(torch.ones(4, 8), dim=1)
    assert nt_xent(flat, flat, 1.0)[0].item() == pytest.approx(np.log(7), rel=1e-5)


def test_tune_trains_a_new_encoder_that_the_pipeline_loads(tmp_path, prepared_slice):
    out = tmp_path / "tuned"
    stats = tune([prepared_slice], out, SMALL)
    assert stats["steps"] == 3 and np.isfinite(stats["final_loss"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "training.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    assert "contrastive" in (out / "README.md").read_text().lower()
    # every file as readable as any file the user makes (the weights used to come out 600: a shared model
    # folder could not be read by the cluster's other accounts)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~_umask() for p in out.iterdir())
    embedder = Embedder(ModelSpec(str(out)), EmbedSettings(precision="fp32"))
    tok = make_tokenizer(TokenizerSpec("kmer", 1), embedder.tokenizer)
    x = embedder.embed_rows(tok.encode_batch([b"ACGT" * 50, b"GGCA" * 50]))
    assert x.shape == (2, 16) and np.isfinite(x).all()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


ZOO = {
    "dnabert": (lambda d, seq: model_zoo.dnabert(d), TokenizerSpec("kmer", 6, True), False),
    "nucleotide-transformer-v1": (lambda d, seq: model_zoo.nucleotide_transformer_v1(d), TokenizerSpec("kmer", 6), False),
    "bpe-bert": (lambda d, seq: model_zoo.bpe_bert(d, seq), TokenizerSpec("hf"), False),
    "dnabert2-like": (lambda d, seq: model_zoo.dnabert2_like(d, seq), TokenizerSpec("hf"), True),
    "hyena-like": (lambda d, seq: model_zoo.hyena_like(d), TokenizerSpec("hf"), True),
}


@pytest.mark.parametrize("family", list(ZOO))
def test_tune_any_model_family_gives_a_folder_the_pipeline_embeds_with(tmp_path, prepared_slice, ecoli_sequence, family):
    make, tok_spec, remote = ZOO[family]
    base = make(tmp_path / "base", ecoli_sequence[:20_000])
    out = tmp_path / "tuned"
    stats = tune([prepared_slice], out, SMALL, str(base), tok_spec, trust_remote_code=remote)
    assert np.isfinite(stats["final_loss"]) and stats["base_model"] == str(base)
    embedder = Embedder(ModelSpec(str(out), trust_remote_code=remote), EmbedSettings(precision="fp32"))
    before = Embedder(ModelSpec(str(base), trust_remote_code=remote), EmbedSettings(precision="fp32"))
    tok = make_tokenizer(tok_spec, embedder.tokenizer)
    rows = tok.encode_batch([bytes(ecoli_sequence[:120]), bytes(ecoli_sequence[500:620])])
    x, y = embedder.embed_rows(rows), before.embed_rows(rows)
    assert x.shape == y.shape and np.isfinite(x).all()
    assert not np.allclose(x, y)  # training changed the weights the pipeline loads


def test_tune_cli_refuses_genomes_shorter_than_a_training_locus(tmp_path):
    fasta = tmp_path / "short.fa"
    fasta.write_text(">c\n" + "ACGT" * 50 + "\n")
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "tune", "--fasta", str(fasta), "--out",
                           str(tmp_path / "m"), "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "no contig is as long as a training locus" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m").exists()


def test_views_must_share_bases():
    from genembed.errors import GenembedError

    assert TuneConfig(seq_bp=300).max_shift == 240  # default: 4/5 of the view
    with pytest.raises(GenembedError, match="must be below the view length"):
        TuneConfig(seq_bp=300, max_shift=300)


def test_a_stopped_training_run_resumes_where_it_stopped_and_ends_as_an_unbroken_run(tmp_path, prepared_slice,
                                                                                      monkeypatch):
    import torch
    from safetensors.torch import load_file

    import genembed.encode.tune as T

    cfg = TuneConfig(seq_bp=120, max_shift=40, batch_size=8, steps=6, hidden_size=16, layers=1, max_mutation=0.3,
                     mutation_warmup=0.5, hard_negatives=0.5)
    whole = tune([prepared_slice], tmp_path / "whole", cfg, checkpoint=tmp_path / "ck-whole")
    monkeypatch.setattr(T, "CHECKPOINT_EVERY", 2)
    pairs, calls = T.ViewSampler.pairs, []

    def killed_at_step_5(self, n, step=0):  # as a kill would stop it: between two saved states
        calls.append(step)
        if step == 4:
            raise KeyboardInterrupt
        return pairs(self, n, step)

    monkeypatch.setattr(T.ViewSampler, "pairs", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        tune([prepared_slice], tmp_path / "resumed", cfg, checkpoint=tmp_path / "ck")
    assert torch.load(tmp_path / "ck/state.pt", weights_only=False)["step"] == 4
    calls.clear()
    monkeypatch.setattr(T.ViewSampler, "pairs", pairs)
    resumed = tune([prepared_slice], tmp_path / "resumed", cfg, checkpoint=tmp_path / "ck")
    assert resumed["steps"] == 6 and resumed["finished"] and len(resumed["loss_curve"]) == 1
    a, b = load_file(tmp_path / "whole/model.safetensors"), load_file(tmp_path / "resumed/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # the same weights as the run never stopped
    assert resumed["final_loss"] == pytest.approx(whole["final_loss"], rel=1e-4)
    other = TuneConfig(**{**cfg.__dict__, "hard_negatives": 0.25})
    with pytest.raises(GenembedError, match="a checkpoint of another run"):
        tune([prepared_slice], tmp_path / "other", other, checkpoint=tmp_path / "ck")


def test_hard_negatives_share_a_contig_and_gc_and_the_mutation_rate_ramps_up(prepared_slice):
    from genembed.data.genome import Genome
    from genembed.encode.tune import ViewSampler, _gc

    cfg = TuneConfig(seq_bp=200, max_shift=50, batch_size=8, steps=100, max_mutation=0.35, mutation_warmup=0.5,
                     hard_negatives=1.0)
    sampler = ViewSampler([Genome(prepared_slice)], cfg, np.random.default_rng(0))
    assert [round(sampler.max_rate(s), 3) for s in (0, 25, 50, 99)] == [0.1, 0.225, 0.35, 0.35]
    seq, region = sampler._locus()
    twin = sampler._locus(region, _gc(seq))[0]
    assert abs(_gc(twin) - _gc(seq)) <= 0.01 and twin != seq
    first, second = sampler.pairs(8, step=0)
    assert len(first) == len(second) == 8


def test_mutate_one_leaves_the_first_view_as_the_genome_has_it(prepared_slice):
    from genembed.data.genome import Genome
    from genembed.encode.tokenize import reverse_complement

    genome = Genome(prepared_slice)
    text = b"".join(genome.fetch(c, 0, n) for c, n in genome.contigs.items())
    cfg = TuneConfig(seq_bp=200, max_shift=50, batch_size=8, max_mutation=0.3, mutate_one=True)
    first, second = ViewSampler([genome], cfg, np.random.default_rng(0)).pairs(8)
    assert all(v in text or reverse_complement(v) in text for v in first)  # the genome's own sequence
    assert sum(v in text or reverse_complement(v) in text for v in second) < 4  # the queries are mutated
