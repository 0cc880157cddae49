#!/usr/bin/env bash
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
python benchmarks/diagnose_gpu.py
common="--set model.name=transformer_small --set train.max_steps=600 --set train.eval_every=300 --set train.save_every=0 --set data.max_valid_pairs=200 --set task_options.final_beam_size=1 --set train.progress_bar=false --set train.log_every=100 --set task_options.average_last=0 --set train.best_metric=null --set optim.warmup_steps=300"
for p in fp32 bf16; do
  timeout 200 python -m formers.cli.main train multi30k-en-de --run-dir /tmp/runs/$p $common --set train.precision=$p > $OUT/$p.log 2>&1 &
done
wait
for p in fp32 bf16; do echo "== $p"; tail -2 $OUT/$p.log; cat /tmp/runs/$p/metrics.csv | cut -d, -f1,3,6,8,9,11; done
