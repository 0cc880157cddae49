#!/usr/bin/env bash
# What the GPU has not yet measured of the CPU-built work (issue 15), in four parts of under 10 minutes each (one
# device call each; a device session has 30 minutes). Each prints its lines and writes its JSON under $OUT.
#   1: the GPU tests of what changed (step and optimizer graphs, the LSTM's graphed steps, light captures, seq2seq
#      fast == eager), then beam_capture.py: beam search's light captures against torch.cuda.graph's, fresh and kept
#   2, 3: step profiles, each recipe as shipped and with train.graph_optimizer=true in the same call: the recipes
#      below 80% GPU-busy (EfficientFormer and Swin; ViT), and the LSTM recipe eager (its default) and graphed
#   4: generate_speed.py, the whole decoding comparison (GPT-2 greedy/sampling against HF, beam-4 against Marian)
# Usage on the GPU machine: FORMERS_DATA_DIR=<data> OUT=<dir> bash benchmarks/pending_gpu.sh 1|2|3|4
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
  2|3)
    [ "$1" = 2 ] && vision="efficientformer-fashion-mnist swin-fashion-mnist" || vision=vit-fashion-mnist
    for r in $vision; do
      profile "$r" ""
      profile "$r" _optgraph train.graph_optimizer=true
    done
    if [ "$1" = 3 ]; then
      profile multi30k-en-de-lstm ""
      profile multi30k-en-de-lstm _graphed train.cuda_graphs=true
      profile multi30k-en-de-lstm _optgraph train.cuda_graphs=true train.graph_optimizer=true
    fi;;
  4)
    timeout 560 python benchmarks/generate_speed.py --out "$OUT/generate_speed.json" 2>&1 | tail -30;;
  *)
    echo "usage: bash benchmarks/pending_gpu.sh 1|2|3|4" >&2
    exit 2;;
esac
