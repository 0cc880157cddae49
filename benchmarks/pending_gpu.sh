#!/usr/bin/env bash
# What the GPU has not yet measured of the CPU-built work (issue 15), in four parts of under 10 minutes each (one
# device call each; a device session has 30 minutes). Each prints its lines and writes its JSON under $OUT.
#   1: the GPU tests of what changed (step and optimizer graphs, the LSTM's graphed steps, light captures, seq2seq
#      fast == eager), then beam_capture.py: beam search's light captures against torch.cuda.graph's, fresh and kept
#   2: step profiles of the recipes below 80% GPU-busy (EfficientFormer, Swin, ViT) with train.graph_optimizer=true,
#      and of the LSTM recipe graphed, with and without it
#   3: the same recipes as shipped (the baseline, on the same machine)
#   4: generate_speed.py, the whole decoding comparison (GPT-2 greedy/sampling against HF, beam-4 against Marian)
#   5: fashion-detect's step profile graphed (its default: matching on the device) and eager, then the recipe itself
# Usage on the GPU machine: FORMERS_DATA_DIR=<data> OUT=<dir> bash benchmarks/pending_gpu.sh 1|2|3|4|5
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader
profile() {  # recipe, tag, --set values...
  local recipe=$1 tag=$2
  shift 2
  local sets=()
  for v in "$@"; do sets+=(--set "$v"); done
  timeout ${LIMIT:-100} python benchmarks/step_profile.py "$recipe" "${sets[@]}" ${tag:+--tag "$tag"} --out "$OUT" \
    2>&1 | grep "^==" || echo "== $recipe $tag: failed"
}
case ${1:-} in
  1)
    timeout 240 python -m pytest -q -p no:cacheprovider -m gpu tests/training/test_step_graphs.py \
      tests/training/test_optimizer_graph.py tests/test_devices.py tests/generation/test_seq2seq.py 2>&1 | tail -6
    timeout 300 python benchmarks/beam_capture.py --repeats 2 --out "$OUT/beam_capture.json" 2>&1 | tail -12;;
  2)  # the new variants alone: every vision recipe with the graphed update, the LSTM graphed with and without it
    for r in efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist; do
      profile "$r" _optgraph train.graph_optimizer=true
    done
    profile multi30k-en-de-lstm _graphed train.cuda_graphs=true
    profile multi30k-en-de-lstm _optgraph train.cuda_graphs=true train.graph_optimizer=true;;
  3)  # the same recipes as shipped, for the comparison on the same machine
    for r in efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist multi30k-en-de-lstm; do
      profile "$r" ""
    done;;
  4)
    timeout 560 python benchmarks/generate_speed.py --out "$OUT/generate_speed.json" 2>&1 | tail -30;;
  5)  # fashion-detect: its steps graphed (matching on the device, the default now) against eager, then the recipe
    profile fashion-detect ""
    profile fashion-detect _eager train.cuda_graphs=false
    # the cosine schedule is planned over max_steps: as many as the profiled step time fits in the 2-minute budget
    steps=$(python -c "import json; print(int(115e3 / json.load(open('$OUT/step_profile_fashion-detect.json'))[
      'wall_ms_per_step']))" 2>/dev/null || echo 6000)
    echo "fashion-detect: max_steps $steps"
    timeout 300 python -m formers train fashion-detect --run-dir /tmp/fd \
      --set train.max_steps="$steps" 2>&1 | grep -E "^(final|step|data:)" | tail -8
    cp /tmp/fd/results.json "$OUT/detr_fashion-detect_graphed.json" 2>/dev/null
    cp /tmp/fd/metrics.csv "$OUT/detr_fashion-detect_graphed_metrics.csv" 2>/dev/null;;
  *)
    echo "usage: bash benchmarks/pending_gpu.sh 1|2|3|4|5" >&2
    exit 2;;
esac
