"""EfficientFormer speed, formers against timm in one run: bf16 training and inference throughput, 224x224.

Both models hold the SAME weights (timm's random init converted with ``formers.interop.efficientformer``),
dropout and stochastic depth off, and see the same random batches. Training: bf16 autocast, cross-entropy on
float32 logits outside the model, fused AdamW; a step is forward, backward, optimizer step and zeroing the
gradients. Inference: bf16 autocast under ``torch.inference_mode`` (eval mode, BatchNorm running statistics; each
step sets the mode itself, ``model.train()`` / ``model.eval()``, as when this was measured). Images per second come
from CUDA events around ``--steps`` steps after ``--warmup`` steps; the two libraries are timed alternately,
``--rounds`` times each, and the best round is kept; cuDNN picks its convolution algorithms
(``cudnn.benchmark``). formers' host-side NaN check reads the device, so it is switched off with
``value_checks(False)`` as the training tasks do (the ``formers (checks)`` row measures it). ``--compile`` adds
``torch.compile`` of both models; ``--channels-last`` puts both models and the batch in channels_last. The
harness is ``benchmarks/vision_bench.py``, shared with the other vision families.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/efficientformer_speed.py`` (``--model
efficientformer_l3``/``_l7``; ``--smoke``: a tiny CPU run of the same code). Writes
``benchmarks/results/efficientformer_speed_<l1|l3|l7>_<gpu>.json`` (and ``$OUT/`` when set) and prints a table.
"""

from __future__ import annotations

from vision_bench import SpeedSpec, main

SPEC = SpeedSpec(
    default_models="efficientformer_l1",
    result_stem=lambda name: f"efficientformer_speed_{name.removeprefix('efficientformer_')}",
    smoke_timm_kwargs=dict(depths=(1, 1, 1, 2), embed_dims=(8, 16, 24, 32), num_vit=1, num_classes=10),
    mode_each_step=True,
    cudnn_benchmark=True,
)

if __name__ == "__main__":
    main(SPEC, __doc__.splitlines()[0])
