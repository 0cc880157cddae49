"""Swin-T speed, formers against timm in one run: bf16 training and inference throughput at batch 256, 224x224.

Both models hold the SAME weights (timm's random init of ``swin_tiny_patch4_window7_224`` converted with
``formers.from_timm``), dropout off and stochastic depth 0.2 in both while training (Swin-T's own setting), and see
the same random batches. timm is timed as shipped (its Swin attention is the explicit softmax path unless
``TIMM_FUSED_ATTN=2``) and, as ``timm fused attn``, with its experimental fused attention switched on. Training:
bf16 autocast, cross-entropy on float32 logits, fused AdamW; a step is forward, backward, optimizer step and
zeroing the gradients. Inference: bf16 autocast under ``torch.no_grad`` in eval mode. Images per second come from
CUDA events around ``--steps`` steps after ``--warmup`` steps; the variants are timed one after the other, train
then inference, ``--rounds`` times (default once), and the best round is kept. formers' host-side NaN check reads
the device: the ``formers`` row runs with it off (``value_checks(False)``, as the training tasks do), the
``formers (checks)`` row with it on. ``speedup_vs_best_timm`` divides by the faster timm attention path; peak
training memory is measured after the timing, every variant resident. The harness is
``benchmarks/vision_bench.py``, shared with the other vision families.

``benchmarks/results/swin_speed_h200.json`` was written by this script before it moved onto the shared harness
(commit d800dd5, ``python benchmarks/swin_speed.py``): the same steps (cross-entropy then ran inside autocast, which
casts it to float32 all the same), one round in the same order, but with formers' value checks on (today's
``formers (checks)`` row), with each variant's peak memory taken with only that model resident, and in another
JSON layout.

Run on a CUDA machine: ``PYTHONPATH=src python benchmarks/swin_speed.py [--batch 256] [--steps 20] [--out FILE]``
(``--smoke``: a tiny CPU run of the same code). Writes ``benchmarks/results/swin_speed_<gpu>.json`` (or ``--out``;
and ``$OUT/`` when set) and prints a table.
"""

from __future__ import annotations

from vision_bench import SpeedSpec, main


def _timm_fused_attn() -> None:
    import timm.layers

    timm.layers.set_fused_attn(True, experimental=True)


SPEC = SpeedSpec(
    default_models="swin_tiny_patch4_window7_224",
    result_stem=lambda name: "swin_speed",
    smoke_timm_kwargs=dict(img_size=56, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=7, num_classes=10),
    smoke_overrides={"image_size": 56},
    drop_path_rate=0.2,
    infer_no_grad=True,
    extra_timm={"timm fused attn": _timm_fused_attn},
    rounds=1,
)

if __name__ == "__main__":
    main(SPEC, __doc__.splitlines()[0])
