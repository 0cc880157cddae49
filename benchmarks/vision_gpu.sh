#!/usr/bin/env bash
# Trains the Fashion-MNIST recipes given as arguments (default: all four families) one after another on one GPU,
# compiled (train.compile=true). Logs, metrics and results.json go to $OUT.
#
# By default each recipe runs as written (its max_steps and 5-minute budget; the README figures). With STEPS set
# (e.g. STEPS=20000), every recipe trains that many steps. With BUDGET_S set instead, each recipe first runs a
# PROBE_STEPS-step (400) probe (compiled, no evaluation) whose images/s sets max_steps so that the run fits BUDGET_S
# seconds (the cosine schedule then spans exactly those steps).
# Usage on the GPU machine: FORMERS_DATA_DIR=<folder with fashion-mnist/> OUT=<dir> bash benchmarks/vision_gpu.sh vit swin
# (about 5 minutes per recipe on an H200; each run starts afresh in $RUNS/<recipe>, default /tmp/runs)
# MODE=reduce-overhead replays the compiled steps as CUDA graphs (train.compile_mode).
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
BUDGET_S=${BUDGET_S:-}
PROBE_STEPS=${PROBE_STEPS:-400}
RUNS=${RUNS:-/tmp/runs}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
families=${*:-vit swin tnt efficientformer}
MODE=${MODE:-default}  # train.compile_mode: default, reduce-overhead (CUDA graphs), ...
common=(--set train.progress_bar=false --set train.tensorboard=false --set train.compile=true --set train.compile_mode=$MODE)
for family in $families; do
  name=$family-fashion-mnist
  steps=${STEPS:-}
  if [ -z "$steps" ] && [ -n "$BUDGET_S" ]; then
    rm -rf "/tmp/probe/$name"
    python -m formers.cli.main train "$name" --run-dir "/tmp/probe/$name" "${common[@]}" --set train.max_steps=$PROBE_STEPS --set train.max_minutes=null \
      --set train.eval_every=0 --set train.log_every=$(( PROBE_STEPS / 4 )) --set optim.warmup_steps=$(( PROBE_STEPS / 4 )) > "$OUT/$name.probe.log" 2>&1
    steps=$(python - "$name" "$BUDGET_S" <<'EOF'
import csv, sys
from formers.recipes import load_recipe
name, budget = sys.argv[1], float(sys.argv[2])
rows = [r for r in csv.DictReader(open(f"/tmp/probe/{name}/metrics.csv")) if r.get("tokens_per_s")]
images_per_s = float(rows[-1]["tokens_per_s"])  # the last quarter of the probe (compiled)
batch = load_recipe(name).data["batch_size"]
print(int((budget - 25) * images_per_s / batch) // 100 * 100)  # 25 s: compilation and evaluations
EOF
)
    echo "$name: probe $(grep -c . /tmp/probe/$name/metrics.csv) rows -> max_steps $steps for ${BUDGET_S}s"
  fi
  steps_args=()  # no STEPS / BUDGET_S, or a failed probe: the recipe's own max_steps
  [ -n "$steps" ] && steps_args=(--set train.max_steps="$steps" --set train.eval_every=$(( steps / 5 )) \
    --set train.max_minutes=$(( ${BUDGET_S:-180} / 60 + 2 )))
  rm -rf "${RUNS:?}/$name"
  /usr/bin/time -f "$name wall %e s" python -m formers.cli.main train "$name" --run-dir "$RUNS/$name" \
    "${common[@]}" "${steps_args[@]}" > "$OUT/$name.log" 2>&1
  cp "$RUNS/$name/metrics.csv" "$OUT/${name}_metrics.csv" 2>/dev/null
  cp "$RUNS/$name/results.json" "$OUT/${name}_results.json" 2>/dev/null
  echo "== $name"; grep -E "data:|final|wall|Error|error" "$OUT/$name.log" | tail -6
done
