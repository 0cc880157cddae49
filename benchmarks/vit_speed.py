"""ViT-B/16 speed, formers against timm in one run: bf16 training and inference throughput at batch 256, 224x224.

Both models hold the SAME weights (timm's random init converted with ``formers.interop.vit``), dropout and
stochastic depth off, and see the same random batches. Training: bf16 autocast, cross-entropy on float32
logits outside the model, fused AdamW; a step is forward, backward, optimizer step and zeroing the gradients.
Inference: bf16 autocast under ``torch.inference_mode``. Images per second come from CUDA events around
``--steps`` steps after ``--warmup`` steps; the two libraries are timed alternately, ``--rounds`` times each, and
the best round is kept. formers' host-side NaN check reads the device, so it is switched off with
``value_checks(False)`` as the training tasks do (the ``formers (checks)`` row measures it). ``--compile`` adds
``torch.compile`` of both models. The harness is ``benchmarks/vision_bench.py``, shared with the other vision
families.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/vit_speed.py`` (``--smoke``: a tiny CPU run of the same
code; ``--model``: any ``vit_*`` name registered in both libraries). Writes
``benchmarks/results/vit_speed_<gpu>.json`` (and ``$OUT/`` when set) and prints a table.
"""

from __future__ import annotations

from vision_bench import SpeedSpec, main

SPEC = SpeedSpec(
    default_models="vit_base_patch16_224",
    result_stem=lambda name: "vit_speed",
    smoke_timm_kwargs=dict(embed_dim=64, depth=2, num_heads=2, img_size=32, patch_size=8, num_classes=10),
    smoke_overrides={"num_heads": 2},
)

if __name__ == "__main__":
    main(SPEC, __doc__.splitlines()[0])
