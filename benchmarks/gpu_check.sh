#!/usr/bin/env bash
# One GPU check (make gpu-check): on a CUDA machine, in under 8 minutes, run what CPU machines cannot:
#   1. the test suite's `gpu` marker;
#   2. a bf16 training step (3 optimizer steps) of every variant, without and with torch.compile;
#   3. the four benchmarks at GPU size (--device cuda), printing their JSON;
#   4. a 1-GPU FSDP2 save -> resume round trip through torch.distributed.checkpoint (benchmarks/_fsdp_roundtrip.py).
# Every JSON line goes to one file: $OUT (default runs/gpu_check/results.jsonl); logs beside it. Exit status: the
# number of failed checks (0 = all passed); 2 with one `error:` line when there is no CUDA device.
#   bash benchmarks/gpu_check.sh [PYTHON]
set -u
PY=${1:-${PY:-python}}
DIR=${GPU_CHECK_DIR:-runs/gpu_check}
OUT=${OUT:-$DIR/results.jsonl}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "error: benchmarks/gpu_check.sh needs a CUDA device (torch.cuda.is_available() is false here); run it on a GPU machine" >&2
    exit 2
fi
mkdir -p "$DIR"
: > "$OUT"
failed=0
BUDGET=${GPU_CHECK_BUDGET_S:-450}  # start no new check after this many seconds, so the whole run stays under 8 min
late() {  # late NAME: true (and recorded as skipped) when the time budget is spent
    if [ "$SECONDS" -ge "$BUDGET" ]; then
        printf '{"check": "%s", "skipped": "time budget of %ss spent"}\n' "$1" "$BUDGET" >> "$OUT"
        echo "== $1: skipped (budget)"
        return 0
    fi
    return 1
}
record() {  # record NAME STATUS [JSON-LINE-FILE]: append the JSON lines of a check, or a line saying it failed
    local name=$1 status=$2 log=$3
    if [ "$status" -eq 0 ]; then
        grep -h '^{' "$log" >> "$OUT" || true
    else
        failed=$((failed + 1))
        printf '{"check": "%s", "status": %d, "log": "%s"}\n' "$name" "$status" "$log" >> "$OUT"
    fi
    echo "== $name: $([ "$status" -eq 0 ] && echo ok || echo "FAILED ($status), see $log")"
}

# 1. tests marked gpu
timeout 120 "$PY" -m pytest -q -m gpu -p no:cacheprovider > "$DIR/pytest_gpu.log" 2>&1
s=$?; [ $s -eq 5 ] && s=0  # 5 = no test carries the marker
record pytest_gpu $s "$DIR/pytest_gpu.log"

# 2. bf16 training steps of every variant, eager and compiled
"$PY" -m latentlm data prepare shakespeare > "$DIR/prepare.log" 2>&1 || true
"$PY" -m latentlm data prepare smollm2 >> "$DIR/prepare.log" 2>&1 || true
for cfg in configs/gpt/tiny.yaml configs/thoughtbubbles/tiny.yaml configs/free_transformer/tiny.yaml configs/latent_thoughts/coconut.yaml; do
    for compile in false true; do
        name="train_$(basename "$(dirname "$cfg")")_compile_$compile"
        late "$name" && continue
        run="$DIR/$name"
        rm -rf "$run"
        timeout 90 "$PY" -m latentlm train "$cfg" --train.device=cuda --train.precision=bf16 --train.compile=$compile \
            --train.max_steps=3 --train.ckpt_every=3 --train.out_dir="$run" --train.resume=false --eval.every=0 \
            --log.progress=false --log.tensorboard=false > "$run.log" 2>&1
        s=$?
        [ $s -eq 0 ] && "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({'check': sys.argv[2], 'tokens_per_s': d['tokens_per_s'], 'final_train_loss': d['final_train_loss']}))" "$run/train_summary.json" "$name" >> "$run.log"
        record "$name" $s "$run.log"
    done
done

# 3. the benchmarks at GPU size
for b in benchmarks/gpt_vs_hf.py benchmarks/free_transformer_cost.py benchmarks/thoughtbubbles_cost.py benchmarks/latent_passes.py; do
    name="bench_$(basename "$b" .py)"
    late "$name" && continue
    timeout 150 "$PY" "$b" --device cuda > "$DIR/$name.log" 2>&1
    record "$name" $? "$DIR/$name.log"
done

# 4. FSDP2 save -> resume on one GPU (before the budget check: it is short and the one multi-GPU-path check)
timeout 60 "$PY" benchmarks/_fsdp_roundtrip.py --device cuda --dir "$DIR/fsdp_roundtrip" > "$DIR/fsdp.log" 2>&1
record fsdp_roundtrip $? "$DIR/fsdp.log"

echo "results: $OUT ($failed failed)"
exit $failed
