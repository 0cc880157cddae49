#!/usr/bin/env bash
# What the GPU has not yet measured of the CPU-built work (issue 15), in parts of a few minutes each, run in the order
# given (a device call lasts at most 10 minutes; a device session has 30). Each prints its lines and writes its JSON
# under $OUT.
#   tests     the GPU tests of what changed (step and optimizer graphs, DETR's and the LSTM's graphed steps, light
#             captures, seq2seq fast == eager)                                                          (~4 min)
#   held      only the GPU test of the held detection loader (CUDA batches equal the CPU's)             (~1 min)
#   detect    fashion-detect's step profile graphed (its default: matching on the device; DETECT_EAGER=1: and
#             eager)                                                                                    (~2 min)
#   recipe    the fashion-detect recipe, its max_steps fitted to the 2-minute budget by detect's profile (~3 min)
#   optgraph  step profiles of EfficientFormer, Swin and ViT on Fashion-MNIST with train.graph_optimizer=true
#   lstm      the LSTM recipe graphed, with and without the graphed optimizer update
#   baseline  EfficientFormer, Swin, ViT and the LSTM recipe as shipped (for the comparison on the same machine)
#   beam      beam_capture.py: beam search's light captures against torch.cuda.graph's, fresh and kept  (~5 min)
#   generate  generate_speed.py: GPT-2 greedy/sampling against HF, beam-4 against Marian                (~9 min)
# RECIPES="a b" narrows optgraph and baseline to those recipes.
# Usage on the GPU machine: FORMERS_DATA_DIR=<data> OUT=<dir> bash benchmarks/pending_gpu.sh PART...
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
[ $# -gt 0 ] || { echo "usage: bash benchmarks/pending_gpu.sh PART... (tests held detect recipe optgraph lstm baseline beam generate)" >&2; exit 2; }
for part in "$@"; do
  echo "=== $part"
  case $part in
    tests)
      timeout 240 python -m pytest -q -p no:cacheprovider -m gpu tests/training/test_step_graphs.py \
        tests/data/test_detection_loader.py tests/training/test_optimizer_graph.py tests/test_devices.py tests/generation/test_seq2seq.py 2>&1 | tail -8;;
    held)
      timeout 120 python -m pytest -q -p no:cacheprovider -m gpu tests/data/test_detection_loader.py 2>&1 | tail -4;;
    detect)
      profile fashion-detect ""
      [ "${DETECT_EAGER:-0}" = 1 ] && profile fashion-detect _eager train.cuda_graphs=false;;
    recipe)
      # the cosine schedule is planned over max_steps: as many as the profiled step time fits in the 2-minute budget
      steps=$(python -c "import json; print(int(115e3 / json.load(open('$OUT/step_profile_fashion-detect.json'))[
        'wall_ms_per_step']))" 2>/dev/null || echo 6000)
      echo "fashion-detect: max_steps $steps"
      timeout 300 python -m formers train fashion-detect --run-dir /tmp/fd --set train.max_steps="$steps" 2>&1 \
        | grep -E "^(final|step|data:)" | tail -8
      cp /tmp/fd/results.json "$OUT/detr_fashion-detect_graphed.json" 2>/dev/null
      cp /tmp/fd/metrics.csv "$OUT/detr_fashion-detect_graphed_metrics.csv" 2>/dev/null;;
    optgraph)
      for r in ${RECIPES:-efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist}; do
        profile "$r" _optgraph train.graph_optimizer=true
      done;;
    lstm)
      profile multi30k-en-de-lstm _graphed train.cuda_graphs=true
      profile multi30k-en-de-lstm _optgraph train.cuda_graphs=true train.graph_optimizer=true;;
    baseline)
      for r in ${RECIPES:-efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist multi30k-en-de-lstm}; do
        profile "$r" ""
      done;;
    beam)
      timeout 300 python benchmarks/beam_capture.py --repeats 2 --out "$OUT/beam_capture.json" 2>&1 | tail -12;;
    generate)
      timeout 560 python benchmarks/generate_speed.py --out "$OUT/generate_speed.json" 2>&1 | tail -30;;
    *)
      echo "unknown part $part (tests held detect recipe optgraph lstm baseline beam generate)" >&2
      exit 2;;
  esac
done
