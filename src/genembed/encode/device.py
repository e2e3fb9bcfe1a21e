"""Where a model runs and in what precision: the device a job may use (refusing, in one line, a GPU
job that could only run on the CPU), a free GPU per job when several run on one machine, the
precision decided once per run, and what counts as running out of device memory."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from genembed.errors import GenembedError

log = logging.getLogger(__name__)
UNSET = ("", "-1", "NoDevFiles")  # values of CUDA_VISIBLE_DEVICES that hide every GPU
_CLAIMED: list[Any] = []  # open lock files of the GPUs this process holds


def allocated_gpus(env: Mapping[str, str] | None = None) -> str | None:
    """The GPUs a scheduler gave this job, as the variable that says so (``CUDA_VISIBLE_DEVICES=0``,
    SLURM's ``SLURM_STEP_GPUS``/``SLURM_JOB_GPUS``); None when nothing says a GPU was given."""
    env = os.environ if env is None else env
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        value = env.get(var, "").strip()
        if value not in UNSET:
            return f"{var}={value}"
    return None


def why_no_cuda() -> str:
    """Why torch cannot use CUDA here: a CPU-only build, or a driver/device it cannot reach."""
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install the CUDA one (envs/gpu.yaml)"
    return (f"torch {torch.__version__} was built for CUDA {torch.version.cuda} but finds no usable device"
            " (NVIDIA driver missing or older than that CUDA, or no device visible)")


def pick_device(name: str = "auto", env: Mapping[str, str] | None = None) -> str:
    """The torch device for ``embed.device``: ``auto`` is CUDA where torch can use it (a free GPU
    when this machine has several, see :func:`claim_gpu`), else the CPU, except in a job a
    scheduler gave a GPU: that is refused, saying why, rather than run ~100x slower on the CPU
    (``cpu`` embeds there anyway). ``cuda:N`` is checked against the visible devices."""
    import torch

    if name == "cpu":
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise GenembedError("embed.device is 'mps' but this machine or torch build has no Apple GPU; use auto or cpu")
        return name
    if name != "auto" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise GenembedError(f"embed.device {name!r} is not a device genembed runs on: use auto, cpu, cuda, cuda:N or mps")
    given = allocated_gpus(env)
    if not torch.cuda.is_available():
        if name != "auto":
            raise GenembedError(f"embed.device is {name!r} but {why_no_cuda()}; use auto or cpu")
        if given:
            raise GenembedError(f"this job was given a GPU ({given}) but cannot use it: {why_no_cuda()};"
                                " set embed.device: cpu to embed on the CPU anyway")
        return "cpu"
    check_ordinal(name, torch.cuda.device_count(), given)
    return claim_gpu(torch.cuda.device_count()) if name in ("auto", "cuda") else name


def check_ordinal(name: str, count: int, given: str | None = None) -> None:
    """Refuse ``cuda:N`` past the visible devices (under SLURM a job sees only its own, from 0)."""
    index = name.partition(":")[2]
    if index and (not index.isdigit() or int(index) >= count):
        raise GenembedError(f"embed.device is {name!r} but {count} CUDA device(s) are visible"
                            f" ({given or 'CUDA_VISIBLE_DEVICES unset'}); a job sees only the GPUs it was given,"
                            " numbered from 0: use auto or cuda")


def claim_gpu(count: int, folder: str | os.PathLike | None = None) -> str:
    """``cuda:i`` for the first of ``count`` GPUs no other genembed process on this machine holds
    (a lock file each, held until this process ends), so that local jobs run with ``--resources
    gpu=N`` spread over N GPUs; ``cuda:0`` when there is one, or when all are held."""
    import fcntl

    if count <= 1:
        return "cuda:0"
    folder = Path(folder or Path(tempfile.gettempdir()) / f"genembed-gpus-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_")
    for i in range(count):
        fh = open(folder / f"{visible}.{i}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        _CLAIMED.append(fh)
        return f"cuda:{i}"
    log.warning("all %d GPUs are held by other genembed jobs; sharing cuda:0", count)
    return "cuda:0"


def native_bf16(device: str) -> bool:
    """True where bf16 runs natively: Ampere or newer GPUs (not emulated, as on V100/T4), CPUs with
    AMX or AVX-512 BF16."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))  # the question is asked of the current device
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.4 has no including_emulation (and did not count emulation)
            return bool(torch.cuda.is_bf16_supported())
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def resolve_precision(precision: str, device: str, native: bool | None = None) -> str:
    """``auto``: bf16 where it is native (``native``, asked of the device when not given), else fp16
    on GPUs and fp32 on CPUs; others as given."""
    if precision != "auto":
        return precision
    if native_bf16(device) if native is None else native:
        return "bf16"
    return "fp16" if device.startswith("cuda") else "fp32"


def plan_precision(precision: str, device: str) -> str:
    """The precision of a whole run, decided once when its plan is made (every job then embeds in
    it, so that no shard differs from the others): ``auto`` asks the device the plan is made on,
    a GPU when one is visible here and the run may use it, else this CPU."""
    import torch

    if precision != "auto":
        return precision
    return resolve_precision("auto", "cuda:0" if device != "cpu" and torch.cuda.is_available() else "cpu")


def pick_dtype(precision: str, device: str):
    """The torch dtype of ``precision`` on ``device`` (fp16 is refused on CPUs; precisions the
    device runs only by emulation are run, with a warning)."""
    import torch

    native = native_bf16(device)
    precision = resolve_precision(precision, device, native)
    cuda = device.startswith("cuda")
    if precision == "fp16" and not cuda:
        raise GenembedError("embed.precision fp16 runs on CUDA only; use bf16 or fp32 on a CPU")
    if precision == "bf16" and not native:
        log.warning("%s has no native bf16: it is emulated (slow); %s", device,
                    "set embed.precision: fp16" if cuda else "set embed.precision: fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def is_out_of_memory(exc: BaseException) -> bool:
    """An error that means the device ran out of memory: torch's OutOfMemoryError (``torch.cuda``'s
    before torch 2.5), or a RuntimeError saying so (cuBLAS failing to allocate its workspace)."""
    import torch

    kinds = tuple(k for k in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if k)
    text = str(exc)
    return isinstance(exc, kinds) or (isinstance(exc, RuntimeError) and
                                      ("out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text))
