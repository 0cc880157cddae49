#!/usr/bin/env bash
# The GPU-busy fraction of every GPU recipe's Trainer steps (issue 15: at least 80% each), as shipped and with the
# optimizer update graphed too (train.graph_optimizer=true); the compiled vision recipes also as they were before
# their whole-step CUDA graphs (compile_mode reduce-overhead). First the GPU tests of the step and optimizer graphs
# (graphed training equals eager training).
# Usage on the GPU machine: FORMERS_DATA_DIR=<data> OUT=<dir> bash benchmarks/recipe_profiles_gpu.sh [recipe ...]
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python -m pytest -q -p no:cacheprovider -m gpu tests/training/test_step_graphs.py \
  tests/training/test_optimizer_graph.py tests/test_devices.py 2>&1 | tail -5
recipes=${*:-gpt-shakespeare-char gpt-shakespeare-bpe bert-pretrain multi30k-en-de vit-fashion-mnist swin-fashion-mnist
          efficientformer-fashion-mnist tnt-fashion-mnist multi30k-en-de-lstm}
for r in $recipes; do
  timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --out "$OUT" 2>&1 | grep "^==" || echo "== $r: failed"
  case $r in *lstm)  # eager by default until its graphed steps are measured: that and with the update graphed too
    for v in "train.cuda_graphs=true --tag _graphed" \
             "train.cuda_graphs=true --set train.graph_optimizer=true --tag _optgraph"; do
      timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --set $v --out "$OUT" 2>&1 | grep "^==" \
        || echo "== $r $v: failed"
    done
    continue;;
  esac
  timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --set train.graph_optimizer=true --tag _optgraph \
    --out "$OUT" 2>&1 | grep "^==" || echo "== $r optimizer graphed: failed"
  case $r in *fashion-mnist)
    timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --set train.compile_mode=reduce-overhead \
      --set train.cuda_graphs=false --tag _reduce_overhead --out "$OUT" 2>&1 | grep "^==" || echo "== $r: failed";;
  esac
done
