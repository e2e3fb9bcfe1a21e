#!/usr/bin/env bash
# The first-GPU check: every CUDA path a CPU cannot exercise (bf16/fp16 against fp32 for every model
# family, out-of-memory back-off for real, pinned memory, benchmarks/embed.py on the GPU for the
# bundled model and a 110M-parameter BERT, FAISS training on the GPU), in under 8 minutes, into one
# JSON file (default results/gpu_check.json). Without a usable GPU each part is skipped with the
# reason. Put the numbers in docs/scaling.md.
#
#     bash benchmarks/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make env
exec timeout 480 .venv/bin/python benchmarks/gpu_check.py --out "${1:-results/gpu_check.json}"
