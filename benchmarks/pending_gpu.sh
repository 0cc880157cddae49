#!/usr/bin/env bash
# What the GPU has not yet measured of the CPU-built work (issue 15), in parts of a few minutes each, run in the order
# given (a device call lasts at most 10 minutes; a device session has 30). Each prints its lines and writes its JSON
# under $OUT.
#   tests     the GPU tests of what changed (step and optimizer graphs, DETR's and the LSTM's graphed steps, light
#             captures, seq2seq fast == eager)                                                          (~4 min)
#   held      only the GPU test of the held detection loader (CUDA batches equal the CPU's)             (~1 min)
#   detect    fashion-detect's step profile graphed (its default: matching on the device; DETECT_EAGER=1: and
#             eager)                                                                                    (~2 min)
#   recipe    the fashion-detect recipe as shipped (needs pycocotools: the offline kit has it)          (~3 min)
#   optgraph  step profiles of EfficientFormer, Swin and ViT on Fashion-MNIST with the optimizer update eager
#             (train.graph_optimizer=false; graphed is the default since 2026-12-07): the counterpart of baseline
#   lstm      the LSTM recipe as shipped (graphed steps and update) and with the optimizer update eager
#   baseline  EfficientFormer, Swin, ViT and the LSTM recipe as shipped (for the comparison on the same machine)
#   beam      beam_capture.py: beam search's light captures against torch.cuda.graph's, fresh and kept  (~5 min)
#   generate  generate_speed.py: GPT-2 greedy/sampling against HF, beam-4 against Marian                (~9 min)
#   lstm-recipe  the multi30k-en-de-lstm recipe as shipped (6 min of graphed steps, then BLEU): its README figures are
#             from eager steps                                                                          (~8 min)
#   sampling  sampling_ratio.py three times (each compiles anew): sampling against greedy, and the first sampled
#             call's seconds after a greedy one, with the model's part of the step compiled once per decoder and
#             shared by every kind of step (2026-12-08, CPU-built: not yet timed on a GPU)             (~6 min)
#   gpt2-train  gpt2_speed.py's training half with formers also at batch 32 and 64 and with inductor's
#             coordinate-descent tuning (the 560k aim)                                                  (~8 min)
#   swin      swin_speed.py --compile, one round: Swin-T against timm, both compiled (the 1.4x aim)     (~9 min)
#   decode    the GPU tests of the decoders (GraphedGreedyDecoder.graph's key, prefill graphs with padding, 12 compiled
#             decoders in one process, compiled fp32 == eager up to float32 ties), then
#             generate_step_variants.py: the default against the whole step compiled per kind (before the shared
#             model part), the output layer's norm apart and norms unfused, greedy batch 1              (~5 min)
# RECIPES="a b" narrows optgraph and baseline to those recipes.
# Measured on an H100 on 2026-12-07 (evening; benchmarks/results/all_h100_2026-12-07.json): tests, the LSTM's and
# the Fashion-MNIST recipes' profiles with the graphed update, generate. Not yet: lstm-recipe, bert-finetune-spam's
# profile since the graphed update (benchmarks/bert_gpu.sh), generate on an H200. Measured on 2026-12-07 at 19:20
# (all_h100_2026-12-07_generate.json, generate_step_variants_h100_fused_norms.json): the folded norms and the prefill
# graph. At 21:54 (0e2eda6): sampling_ratio.py (0.965 of greedy) and decode's tests, 1 failure (dynamo's recompile
# limit, fixed in f8e4ac8). On 2026-12-08 at 00:44 (35bdaa3): decode's tests, 28 passed (with test_sampling.py), and
# sampling_ratio.py 3 times (0.83-1.01); not yet: decode's variants (generate_step_variants.py).
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
[ $# -gt 0 ] || { echo "usage: bash benchmarks/pending_gpu.sh PART... (tests held detect recipe optgraph lstm lstm-recipe" \
  "baseline beam sampling gpt2-train swin decode generate)" >&2; exit 2; }
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
      # as shipped: its max_steps (the cosine schedule's length) is what detect's 2.0 ms a step fits in 115 s on an H100
      timeout 300 python -m formers train fashion-detect --run-dir /tmp/fd 2>&1 | grep -E "^(final|cuda|train|data:)|error" \
        | tail -10
      cp /tmp/fd/results.json "$OUT/detr_fashion-detect.json" 2>/dev/null
      cp /tmp/fd/metrics.csv "$OUT/detr_fashion-detect_metrics.csv" 2>/dev/null;;
    optgraph)
      for r in ${RECIPES:-efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist}; do
        profile "$r" _eagerupdate train.graph_optimizer=false
      done;;
    lstm)
      profile multi30k-en-de-lstm _graphed
      profile multi30k-en-de-lstm _eagerupdate train.graph_optimizer=false;;
    baseline)
      for r in ${RECIPES:-efficientformer-fashion-mnist swin-fashion-mnist vit-fashion-mnist multi30k-en-de-lstm}; do
        profile "$r" ""
      done;;
    lstm-recipe)
      timeout 560 python -m formers train multi30k-en-de-lstm --run-dir /tmp/lstm 2>&1 | grep -E "^(final|bleu|BLEU|cuda|train)|error" \
        | tail -10
      cp /tmp/lstm/results.json "$OUT/multi30k-en-de-lstm_graphed.json" 2>/dev/null
      cp /tmp/lstm/metrics.csv "$OUT/multi30k-en-de-lstm_graphed_metrics.csv" 2>/dev/null;;
    beam)
      timeout 300 python benchmarks/beam_capture.py --repeats 2 --out "$OUT/beam_capture.json" 2>&1 | tail -12;;
    decode)
      timeout 200 python -m pytest -q -p no:cacheprovider -m gpu tests/generation/test_graphed.py \
        tests/generation/test_static_lm.py tests/generation/test_step_compile.py 2>&1 | tail -4
      timeout 330 python benchmarks/generate_step_variants.py --repeats 5 --out "$OUT/generate_step_variants.json" \
        --variants compiled "compiled, whole step per kind" "compiled, output layer's norm apart" "compiled, norms unfused" \
        2>&1 | tail -5;;
    sampling)
      timeout 200 python -m pytest -q -p no:cacheprovider -m gpu tests/generation/test_static_lm.py \
        tests/generation/test_sampling.py 2>&1 | tail -3
      for i in 1 2 3; do
        timeout 130 python benchmarks/sampling_ratio.py --rounds 4 --out "$OUT/sampling_ratio_$i.json" 2>&1 \
          | grep -E "^(greedy|sampling)"
      done;;
    gpt2-train)
      timeout 560 python benchmarks/gpt2_speed.py --skip-generation --hf-default-only --batch-sweep 32,64 --tuned \
        --output "$OUT/gpt2_train.json" 2>&1 | grep -E "^(formers|hf|run|Training)" | tail -20;;
    swin)
      timeout 570 python benchmarks/swin_speed.py --compile --rounds 1 --out "$OUT/swin_speed.json" 2>&1 | tail -20;;
    generate)
      timeout 560 python benchmarks/generate_speed.py --out "$OUT/generate_speed.json" 2>&1 | tail -30;;
    *)
      echo "unknown part $part (tests held detect recipe optgraph lstm lstm-recipe baseline beam sampling gpt2-train" \
        "swin decode generate)" >&2
      exit 2;;
  esac
done
