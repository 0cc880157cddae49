"""TNT speed, formers against timm in one run: bf16 training and inference throughput at batch 256, 224x224.

Both models hold the SAME weights (timm's random init converted with ``formers.interop.tnt``), dropout and
stochastic depth off, and see the same random batches. Training: bf16 autocast, cross-entropy on float32 logits
outside the model, fused AdamW; a step is forward, backward, optimizer step and zeroing the gradients.
Inference: bf16 autocast under ``torch.no_grad`` in eval mode. Images per second come from CUDA events around
``--steps`` (10) steps after ``--warmup`` (3) steps, the variants timed one after the other, ``--rounds`` times
(default once), the best round kept; cuDNN picks its convolution algorithms (``cudnn.benchmark``). formers'
host-side NaN check reads the device: the ``formers`` row runs with it off (``value_checks(False)``, as the
training tasks do), the ``formers (checks)`` row with it on. The harness is ``benchmarks/vision_bench.py``, shared
with the other vision families.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/tnt_speed.py [--models tnt_s_patch16_224,tnt_b_patch16_224]
[--batch 256]`` (``--smoke``: a tiny CPU run of the same code). Writes ``benchmarks/results/tnt_speed_<s|b>_<gpu>.json``
(and ``$OUT/`` when set) and prints a table per model.

Measured before the shared harness (``benchmarks/tnt_gpu.py speed``, commit d800dd5 and earlier: the same steps on
separately initialised models, wall clock, formers' value checks on), H200, torch 2.11, timm 1.0.29, batch 256:
TNT-S inference 3703 img/s vs timm 2726 (1.36x), training 1592 vs 1250 (1.27x). The Fashion-MNIST run that script
also held is the recipe ``formers train tnt-fashion-mnist``.
"""

from __future__ import annotations

from vision_bench import SpeedSpec, main

SPEC = SpeedSpec(
    default_models="tnt_s_patch16_224,tnt_b_patch16_224",
    result_stem=lambda name: f"tnt_speed_{name.split('_')[1]}",
    smoke_timm_kwargs=dict(embed_dim=32, inner_dim=8, depth=2, num_heads_outer=2, num_heads_inner=2, img_size=32,
                           patch_size=8, num_classes=10),
    smoke_overrides=dict(num_heads=2, inner_num_heads=2, patch_size=8),
    infer_no_grad=True,
    cudnn_benchmark=True,
    warmup=3,
    steps=10,
    rounds=1,
)

if __name__ == "__main__":
    main(SPEC, __doc__.splitlines()[0])
