#!/usr/bin/env bash
# The wheels that the GPU machine lacks, for its Python 3.12 (torch, transformers, pandas, pyarrow,
# numpy, huggingface_hub and safetensors are there; nothing can be downloaded there): DuckDB for the
# package, TransformerLens 4.3 and what it imports for the benchmark's loop. Into .whl/ (ignored by
# git: add "/.whl/" to .git/info/exclude), 28 MB; checked with a Python 3.12 environment of the GPU
# machine's versions (transformers 5.17, huggingface_hub 1.33) running `scripts/gpu_bench.sh --device cpu --smoke`.
#
#   scripts/gpu_wheels.sh
# then on the GPU machine, in the repository's root, with .whl carried along:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site scripts/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl \
    duckdb==2.0.1 transformer-lens==4.3.0 beartype==0.23.1 datasets==5.2.0 fancy-einsum==0.0.3 \
    typeguard==4.6.1 dill==0.4.1 multiprocess==0.70.19
ls -l .whl
