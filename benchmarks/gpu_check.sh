#!/usr/bin/env bash
# The first-GPU check: every CUDA path a CPU cannot exercise (bf16/fp16 against fp32 for every model
# family, an FFT-convolution model and DNABERT-2's Triton kernel included; the bundled model's
# precision x pooling x strands grid against CPU fp32; cuda:N past the visible devices; out-of-memory
# back-off for real; pinned memory; repeatability; query vectors against stored ones;
# benchmarks/embed.py on the GPU for the bundled model and a 110M-parameter BERT; FAISS IVF and
# OPQ+IVF-PQ training on the GPU at d = 256 and 896, read back on the CPU), in under 8 minutes, into
# one JSON file: OUT.json, else $OUT/gpu_check.json where $OUT is set (a device run's returned
# folder), else results/gpu_check.json. Without a usable GPU each part is skipped with the reason.
# Put the numbers in docs/scaling.md.
#
#     bash benchmarks/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:+$OUT/gpu_check.json}}"
python=.venv/bin/python
if [ ! -x "$python" ]; then  # a machine with torch installed already (no package index reachable) uses it
    if python3 -c "import torch, faiss, transformers" 2>/dev/null; then python=python3; else make env; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$python" benchmarks/gpu_check.py --out "${out:-results/gpu_check.json}"
