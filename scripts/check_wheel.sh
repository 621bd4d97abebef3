#!/usr/bin/env bash
# The wheel is the product. Build the sdist and the wheel, install the wheel into a fresh venv
# and use it from a folder outside the source tree, as a new user would; every output is
# checked, and the first miss exits non-zero. Run by .ci/run after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
BUILDER=${BUILDER:-.venv/bin/python}  # a python with pip, in which `build` is installed
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

fail() { printf 'check_wheel: %b\n' "$*" >&2; exit 1; }
# expect_in TEXT NEEDLE WHAT: NEEDLE is a fixed string that TEXT must hold
expect_in() { grep -qF -- "$2" <<<"$1" || fail "$3: expected '$2' in:\n$1"; }

# -- build: the sdist, then the wheel from the sdist (python -m build's default) ------------------
"$BUILDER" -m pip install -q --disable-pip-version-check "build>=1.2"
# from a copy of the tree: .ci/run runs this beside scripts/setup.sh, whose editable install writes
# synthdistill.egg-info into the tree while setuptools' sdist would read it
mkdir "$WORK/src"
tar --exclude=./.venv --exclude=./.git --exclude='./*.egg-info' -cf - . | tar -xf - -C "$WORK/src"
"$BUILDER" -m build --outdir "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; fail "build failed"; }
wheel=$(ls "$WORK"/dist/synthdistill-*-py3-none-any.whl)
sdist=$(ls "$WORK"/dist/synthdistill-*.tar.gz)
version=$(basename "$wheel" | cut -d- -f2)
wheel_files=$("$BUILDER" -m zipfile -l "$wheel")
sdist_files=$(tar tzf "$sdist")
for member in synthdistill/data/policies/llama-3.1.yaml synthdistill/data/prompts/general-chat/pack.yaml \
              synthdistill/data/examples/quickstart/distill.yaml synthdistill/schemas/distill.schema.json \
              synthdistill/view/templates/view.html.j2 \
              "synthdistill-$version.dist-info/licenses/LICENSE"; do
  expect_in "$wheel_files" "$member" "the wheel"
  [ "${member#*dist-info}" != "$member" ] || expect_in "$sdist_files" "synthdistill-$version/$member" "the sdist"
done
expect_in "$sdist_files" "synthdistill-$version/LICENSE" "the sdist"
if grep -q "/outputs/" <<<"$wheel_files"; then fail "the wheel carries a run folder (outputs/)"; fi

# -- a fresh venv with the wheel alone (the CPU build of torch first where there is no GPU) -------
"$PYTHON" -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip --disable-pip-version-check -q)
if ! command -v nvidia-smi >/dev/null 2>&1; then "${PIP[@]}" install "torch==2.13.0"; fi
"${PIP[@]}" install "$wheel"
"$WORK/venv/bin/python" -m pip check >/dev/null || fail "pip check in the wheel's venv:\n$("$WORK/venv/bin/python" -m pip check)"

# -- used from another folder ---------------------------------------------------------------------
mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"
S="$WORK/venv/bin/synthdistill"

out=$("$S" --version)
[ "$out" = "synthdistill $version" ] || fail "--version printed '$out', expected 'synthdistill $version'"

out=$("$S" packs list)
for pack in general-chat grade-school-math json-extraction multi-turn; do
  grep -qE "^$pack +[0-9.]+ +[0-9]+ +[^ ]+ +shipped " <<<"$out" || fail "packs list: no shipped pack '$pack' in:\n$out"
done

# every policy file of the source tree, by id, is listed as shipped
expected_ids=$(sed -n 's/^id: *//p' "$REPO"/synthdistill/data/policies/*.yaml | sort)
listed_ids=$("$S" --json policy list | "$WORK/venv/bin/python" -c \
  'import json, sys; print("\n".join(sorted(p["id"] for p in json.load(sys.stdin)["policies"] if p["origin"] == "shipped")))')
[ "$listed_ids" = "$expected_ids" ] || fail "policy list: shipped ids differ from the source tree's:\n$(diff <(echo "$expected_ids") <(echo "$listed_ids"))"

out=$("$S" init myproj)
expect_in "$out" "wrote a project to $WORK/elsewhere/myproj; next: synthdistill plan -c $WORK/elsewhere/myproj/distill.yaml (what it will cost, sending nothing), then synthdistill run -c $WORK/elsewhere/myproj/distill.yaml" "init"
[ "$(ls myproj | tr '\n' ' ')" = "distill.yaml policies prompts schemas " ] || fail "init wrote: $(ls myproj)"
# every $schema line of the new project resolves to a schema file inside it
"$WORK/venv/bin/python" - myproj <<'EOF' || fail "init: a \$schema line does not resolve"
import pathlib, sys
project = pathlib.Path(sys.argv[1]).resolve()
files = sorted(project.rglob("*.yaml"))
assert len(files) == 3, files
for path in files:
    reference = path.read_text().splitlines()[0].split("$schema=", 1)[1]
    target = (path.parent / reference).resolve()
    assert target.is_file() and target.is_relative_to(project / "schemas"), (path, reference)
EOF

cd myproj
out=$("$S" policy check -c distill.yaml)
expect_in "$out" "decision:    allow-with-obligations" "policy check -c distill.yaml"
expect_in "$out" "policy:      smollm2 — SmolLM2 under Apache-2.0 (project policies/smollm2.yaml" "policy check -c distill.yaml"
out=$("$S" policy check --model meta-llama/Llama-3.1-8B-Instruct)
expect_in "$out" "decision:    allow-with-obligations" "policy check --model meta-llama/Llama-3.1-8B-Instruct"
expect_in "$out" "policy:      llama-3.1 — Llama 3.1 Community License Agreement (shipped policies/llama-3.1.yaml" \
  "policy check --model meta-llama/Llama-3.1-8B-Instruct"
out=$("$S" packs validate prompts/quickstart-chat)
expect_in "$out" "ok  prompts/quickstart-chat  quickstart-chat" "packs validate"

echo "check_wheel: $(basename "$wheel") and $(basename "$sdist") built; from a fresh venv: --version, packs list, policy list, init, policy check and packs validate as expected"
