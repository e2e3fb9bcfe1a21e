"""What the GPU paths decide, shown on a CPU: a GPU job that could only run on the CPU fails saying
why, cuda:N is checked against the visible devices, local jobs take different GPUs, the precision
is decided once per run, a model that cannot run in bf16 runs in fp32, DNABERT-2's Triton kernel is
switched off, and every kind of out-of-memory error backs off. (benchmarks/gpu_check.py runs what
only a GPU can show.)"""

from __future__ import annotations

import logging
import sys

import model_zoo
import numpy as np
import pytest
import torch

from genembed.encode.device import allocated_gpus, check_ordinal, claim_gpu, is_out_of_memory, native_bf16, pick_device
from genembed.encode.embed import EmbedSettings, Embedder
from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec, load_tokenizer
from genembed.encode.plan import RunPlan
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer
from helpers import DEFAULT_MODEL

CPU_TORCH = torch.version.cuda is None


def windows(sequence: bytes, n: int = 12, size: int = 300) -> list[bytes]:
    return [sequence[i * 1000 : i * 1000 + size] for i in range(n)]


@pytest.mark.skipif(not CPU_TORCH, reason="shows the CPU-only torch build")
def test_a_job_given_a_gpu_that_torch_cannot_use_fails_in_one_line_saying_why(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(GenembedError) as err:
        Embedder(ModelSpec(str(DEFAULT_MODEL)), EmbedSettings())
    assert str(err.value).startswith("this job was given a GPU (CUDA_VISIBLE_DEVICES=0) but cannot use it: this torch")
    assert "CPU-only build" in str(err.value) and "embed.device: cpu" in str(err.value) and "\n" not in str(err.value)
    assert Embedder(ModelSpec(str(DEFAULT_MODEL)), EmbedSettings(device="cpu")).device == "cpu"  # asked for: runs


def test_what_the_scheduler_gave_is_read_from_the_environment():
    assert allocated_gpus({"SLURM_JOB_GPUS": "2"}) == "SLURM_JOB_GPUS=2"
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "1,3", "SLURM_JOB_GPUS": "1,3"}) == "CUDA_VISIBLE_DEVICES=1,3"
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) is None and allocated_gpus({"CUDA_VISIBLE_DEVICES": ""}) is None
    assert pick_device("auto", {}) == ("cpu" if CPU_TORCH else pick_device("auto", {}))


def test_a_cuda_ordinal_past_the_visible_devices_is_refused_naming_cuda_visible_devices():
    with pytest.raises(GenembedError, match=r"'cuda:1' but 1 CUDA device\(s\) are visible \(CUDA_VISIBLE_DEVICES=3\);"
                                            " a job sees only the GPUs it was given, numbered from 0"):
        check_ordinal("cuda:1", 1, "CUDA_VISIBLE_DEVICES=3")
    check_ordinal("cuda:0", 1)
    check_ordinal("cuda", 1)
    if CPU_TORCH:
        with pytest.raises(GenembedError, match="embed.device is 'cuda:1' but this torch .* is a CPU-only build"):
            pick_device("cuda:1", {})


def test_local_jobs_on_a_machine_with_several_gpus_take_different_ones(tmp_path):
    """With --resources gpu=2, two embed jobs run at once: each holds a lock on its own GPU."""
    assert [claim_gpu(2, tmp_path), claim_gpu(2, tmp_path)] == ["cuda:0", "cuda:1"]
    assert claim_gpu(2, tmp_path) == "cuda:0"  # all held: shared, with a warning
    assert claim_gpu(1, tmp_path) == "cuda:0"


def test_the_precision_is_decided_once_in_the_run_plan(tmp_path):
    plan = RunPlan.make(ModelSpec(str(DEFAULT_MODEL)), TokenizerSpec("kmer", 1), {"size": 500, "stride": 250},
                        EmbedSettings())
    decided = "bf16" if native_bf16("cpu") else "fp32"
    assert plan.embed.precision == decided  # not "auto": every job embeds in it, whatever its device
    plan.write(tmp_path / "model.json")
    again = RunPlan.read(tmp_path / "model.json")
    assert again.embed.precision == decided
    assert Embedder.for_plan(again, device="cpu").precision == {"bf16": "bfloat16", "fp32": "float32"}[decided]
    fixed = RunPlan.make(ModelSpec(str(DEFAULT_MODEL)), TokenizerSpec("kmer", 1), {"size": 500},
                         EmbedSettings(precision="fp32"))
    assert fixed.embed.precision == "fp32"


def test_a_model_with_fft_convolutions_runs_in_fp32_when_bf16_fails(tmp_path, ecoli_sequence, caplog):
    folder = model_zoo.hyena_like(tmp_path / "hyena-fft", fft=True)
    spec = ModelSpec(str(folder), trust_remote_code=True)
    rows = make_tokenizer(TokenizerSpec("hf"), load_tokenizer(folder, spec)).encode_batch(windows(ecoli_sequence))
    with pytest.raises(RuntimeError, match="Unsupported dtype BFloat16"):
        torch.fft.rfft(torch.ones(8, dtype=torch.bfloat16))  # what the model meets in bf16
    with caplog.at_level(logging.WARNING, logger="genembed.encode.embed"):
        reduced = Embedder(spec, EmbedSettings(precision="bf16"))
    assert reduced.precision == "float32"
    assert "HyenaLikeModel fails in bfloat16 (Unsupported dtype BFloat16): running it in float32" in caplog.text
    full = Embedder(spec, EmbedSettings(precision="fp32"))
    np.testing.assert_allclose(reduced.embed_rows(rows), full.embed_rows(rows), atol=1e-5)


def test_dnabert2s_triton_flash_attention_is_switched_off_so_its_standard_attention_runs(tmp_path, ecoli_sequence,
                                                                                          caplog):
    folder = model_zoo.dnabert2_with_triton_kernel(tmp_path / "dnabert2", ecoli_sequence)
    spec = ModelSpec(str(folder), trust_remote_code=True)
    with caplog.at_level(logging.INFO, logger="genembed.encode.embed"):
        emb = Embedder(spec, EmbedSettings(precision="fp32"))
    assert "its Triton flash attention is switched off" in caplog.text
    layers = sys.modules[type(emb.model).__module__]
    assert layers.__name__.startswith("transformers_modules.") and layers.flash_attn_qkvpacked_func is None
    rows = make_tokenizer(TokenizerSpec("hf"), emb.tokenizer).encode_batch(windows(ecoli_sequence))
    assert np.isfinite(emb.embed_rows(rows)).all()


def test_a_runtime_error_saying_out_of_memory_backs_off_like_torchs_own(tmp_path, ecoli_sequence, caplog):
    folder = model_zoo.memory_limited(tmp_path / "limited", max_batch_tokens=600, error="runtime")
    spec = ModelSpec(str(folder), trust_remote_code=True)
    rows = make_tokenizer(TokenizerSpec("kmer", 6), load_tokenizer(folder, spec)).encode_batch(
        windows(ecoli_sequence, 40, 500))
    emb = Embedder(spec, EmbedSettings(token_budget=4096, precision="fp32"))
    with caplog.at_level(logging.WARNING, logger="genembed.encode.embed"):
        got = emb.embed_rows(rows)
    assert "token budget halved" in caplog.text and emb.budget < 600
    np.testing.assert_allclose(got, Embedder(spec, EmbedSettings(token_budget=500, precision="fp32")).embed_rows(rows),
                               atol=2e-5)
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_faiss_training_that_fails_on_the_gpu_is_done_on_the_cpu(caplog):
    import faiss

    from genembed.search.index import train_on_gpu_or_cpu

    x = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)
    index = faiss.index_factory(32, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    # the device copy's training fails for real (4,096 lists from 2,000 vectors), as one on a GPU can
    too_many_lists = lambda _: faiss.index_factory(32, "IVF4096,Flat", faiss.METRIC_INNER_PRODUCT)  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="genembed.search.index"):
        trained = train_on_gpu_or_cpu(index, x, too_many_lists)
    assert "FAISS training on the GPU failed" in caplog.text and "training on the CPU" in caplog.text
    assert trained.is_trained and faiss.extract_index_ivf(trained).nlist == 16


@pytest.mark.parametrize("gpu, rule", [(False, "train_index"), (True, "train_index_gpu")])
def test_index_gpu_names_the_training_job_the_profile_sends_to_the_gpu_partition(tmp_path, gpu, rule):
    import yaml

    from helpers import REPO, snakemake, write_config

    example = REPO / "resources/example/ecoli_k12_mg1655.fna.gz"
    write_config(tmp_path, f"genome\tfasta\neco\t{example}\n", model={"path": str(DEFAULT_MODEL)},
                 index={"gpu": gpu})
    out = snakemake(tmp_path, "-n").stdout
    block = out.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
    assert ("gpu=1" in block) == gpu
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert ("slurm_partition" in profile["set-resources"].get(rule, {})) == gpu
    assert all("gres" not in r for r in profile["set-resources"].values())  # gres beside gpu=1 is refused
