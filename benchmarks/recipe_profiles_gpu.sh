#!/usr/bin/env bash
# The GPU-busy fraction of every GPU recipe's Trainer steps (issue 15: at least 80% each), and the compiled vision
# recipes with formers' whole-step CUDA graphs (train.cuda_graphs=true, compile_mode default) against their
# reduce-overhead default. First the GPU tests of the step graphs (graphed training equals eager training).
# Usage on the GPU machine: FORMERS_DATA_DIR=<data> OUT=<dir> bash benchmarks/recipe_profiles_gpu.sh [recipe ...]
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python -m pytest -q -p no:cacheprovider -m gpu tests/training/test_step_graphs.py 2>&1 | tail -5
recipes=${*:-gpt-shakespeare-char gpt-shakespeare-bpe bert-pretrain multi30k-en-de vit-fashion-mnist swin-fashion-mnist
          efficientformer-fashion-mnist tnt-fashion-mnist multi30k-en-de-lstm}
for r in $recipes; do
  timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --out "$OUT" 2>&1 | grep "^==" || echo "== $r: failed"
  case $r in *fashion-mnist)
    timeout ${LIMIT:-240} python benchmarks/step_profile.py "$r" --set train.compile_mode=default \
      --set train.cuda_graphs=true --tag _graphed --out "$OUT" 2>&1 | grep "^==" || echo "== $r graphed: failed";;
  esac
done
