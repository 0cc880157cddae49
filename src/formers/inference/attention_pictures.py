"""Attention pictures of a checkpoint for one input: what ``formers attention`` draws, family by family.

- ``gpt`` and BERT families: the text's self-attention in one layer, a panel per head (or the one head asked for).
- ``transformer`` and ``rnn`` (translation): the text is translated greedily, then the source is fed again with the
  translation as decoder input and the decoder's cross-attention drawn as a source x target alignment grid (heads
  averaged, or the one head asked for).
- ``vit``, ``tnt``, ``tnt_legacy``: the class token's attention rollout (Abnar & Zuidema 2020) through the layers up
  to the one asked for (all by default), over the image; ``efficientformer`` (no class token): the attention each
  grid cell receives in one layer.
- ``swin``: one block's window attention over the image, its (shifted) windows outlined.
- ``detr``: each detected object's query attention over the image in one decoder layer, with its box (the most
  confident queries when none passes the threshold).

``layer`` counts the model's attention layers of the kind drawn from 0 (default: the last; Swin: the first block,
whose windows are the finest); ``head`` picks one head (default: all heads, or their mean where one map is drawn).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from formers.data.detection_loader import (
    DetectionPreprocessing,
    collate_detection,
    normalize_padded,
)
from formers.data.image_transforms import Preprocessing
from formers.data.images import read_image
from formers.data.tokenizers.base import Tokenizer
from formers.data.tokenizers.load import load_tokenizer
from formers.devices import resolve_device
from formers.generation.seq2seq import greedy_search
from formers.hub import from_pretrained, resolve_checkpoint_dir
from formers.inference.attention import AttentionRecord, attention_maps
from formers.inference.detection import class_scores_of
from formers.layers import check_text
from formers.layers.boxes import box_cxcywh_to_xyxy
from formers.models.detr import class_probabilities
from formers.viz.attention import (
    attention_rollout,
    plot_alignment,
    plot_heads,
    plot_image_attention,
    plot_object_attention,
    plot_window_attention,
    window_attention_map,
)

TEXT_FAMILIES = ("gpt", "bert", "bert_mlm", "bert_pretraining", "bert_sequence_classification",
                 "bert_token_classification")
IMAGE_FAMILIES = ("vit", "tnt", "tnt_legacy", "efficientformer", "swin", "detr")
TRANSLATION_FAMILIES = ("transformer", "rnn")


def _pick(records: list[AttentionRecord], kind: str, layer: int | None, default: int = -1) -> tuple[int, AttentionRecord]:
    """The ``layer``-th record of ``kind`` (default: ``default``), with a clear error when out of range."""
    chosen = [r for r in records if r.kind == kind]
    if not chosen:
        raise ValueError(f"the model made no {kind}-attention call for this input")
    index = default % len(chosen) if layer is None else layer
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(chosen):
        raise ValueError(f"layer must be in [0, {len(chosen)}) (this model has {len(chosen)} {kind}-attention "
                         f"layers), got {layer!r}")
    return index, chosen[index]


def _heads(weights: Tensor, head: int | None) -> Tensor:
    """(B, H, ...) -> (B, ...): the mean over heads, or head ``head``."""
    count = weights.shape[1]
    if head is None:
        return weights.mean(1)
    if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < count:
        raise ValueError(f"head must be in [0, {count}) (this layer has {count} heads), got {head!r}")
    return weights[:, head]


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """One short label per token id: its text, or its vocabulary entry for special tokens (``[CLS]``, ``</s>``)."""
    labels = []
    for i in ids:
        raw = tokenizer.decode([i])
        text = raw.strip() or ("\\n" if "\n" in raw else "\u2423" if raw else "")  # whitespace made visible
        if not text and hasattr(tokenizer, "id_to_token"):
            text = tokenizer.id_to_token(i) or ""
        labels.append(text[:12] or f"<{i}>")
    return labels


def _suffix(layer: int, head: int | None) -> str:
    return f"layer{layer}" + (f"-head{head}" if head is not None else "")


def _self_attention_text(model: nn.Module, directory: Path, text: str, layer: int | None, head: int | None,
                         out: Path) -> Path:
    tokenizer = load_tokenizer(directory)
    ids = tokenizer.encode(text)
    if not ids:
        raise ValueError(f"input {text!r} encodes to no tokens")
    limit = model.config.max_seq_len
    if len(ids) > limit:
        raise ValueError(f"input has {len(ids)} tokens, beyond the model's max_seq_len={limit}")
    device = next(model.parameters()).device
    _, records = attention_maps(model, torch.tensor([ids], device=device))
    index, record = _pick(records, "self", layer)
    weights = record.weights[0] if head is None else _heads(record.weights, head)[:, None][0]  # (H or 1, T, T)
    names = None if head is None else [f"head {head}"]
    labels = token_labels(tokenizer, ids)
    title = f"{model.family} self-attention, layer {index} ({record.name})"
    return plot_heads(weights, labels, labels, out / f"{model.family}-self-{_suffix(index, head)}.png", title, names)


def _alignment(model: nn.Module, directory: Path, text: str, layer: int | None, head: int | None, out: Path) -> Path:
    tokenizer = load_tokenizer(directory)
    c = model.config
    ids = tokenizer.encode(text)
    if not ids:
        raise ValueError(f"input {text!r} encodes to no tokens")
    if len(ids) > c.max_seq_len:
        raise ValueError(f"input has {len(ids)} tokens, beyond the model's max_seq_len={c.max_seq_len}")
    device = next(model.parameters()).device
    src = torch.tensor([ids], device=device)
    mask = torch.ones_like(src, dtype=torch.bool)
    with torch.no_grad():
        translation = greedy_search(model, src, mask, max_new_tokens=c.max_seq_len - 1)[0]  # + bos fits
    tgt = torch.tensor([[c.bos_id, *translation]], device=device)  # decoder inputs; row t predicts token t
    _, records = attention_maps(model, src, tgt, mask)
    index, record = _pick(records, "cross", layer)
    weights = _heads(record.weights, head)[0]  # (T, S)
    targets = token_labels(tokenizer, [*translation, c.eos_id])
    title = f"cross-attention, layer {index}" + (f", head {head}" if head is not None else ", heads averaged")
    words = tokenizer.decode(translation)
    title += f"\n{words[:60]!r}" + ("..." if len(words) > 60 else "")
    return plot_alignment(weights, token_labels(tokenizer, ids), targets,
                          out / f"{model.family}-cross-{_suffix(index, head)}.png", title)


def _classifier_image(model: nn.Module, directory: Path, path: str) -> tuple[Tensor, Tensor]:
    prep = Preprocessing.load(directory)
    image = read_image(path, prep.in_channels)  # (C, H, W) uint8
    return image, prep(image[None]).to(next(model.parameters()).device)


def _rollout(model: nn.Module, directory: Path, path: str, layer: int | None, head: int | None, out: Path) -> Path:
    image, pixels = _classifier_image(model, directory, path)
    _, records = attention_maps(model, pixels)
    index, record = _pick(records, "self", layer)
    gh, gw = record.extra["grid"]
    prefix = record.extra["prefix_tokens"]
    if prefix:
        layers = [r.weights if head is None else r.weights[:, head : head + 1]
                  for r in [r for r in records if r.kind == "self"][: index + 1]]
        _heads(record.weights, head)  # checks ``head``
        heat = attention_rollout(layers)[0, 0, prefix:]  # (Gh*Gw,) the class token's rollout over the patches
        what = f"attention rollout of layers 0-{index}"
    else:
        heat = _heads(record.weights, head)[0].mean(0)  # (Gh*Gw,) attention each cell receives
        what = f"attention received, layer {index}"
    what += f", head {head}" if head is not None else ""
    return plot_image_attention(image, heat.view(gh, gw), out / f"{model.family}-{_suffix(index, head)}.png",
                                f"{model.family}: {what}")


def _windows(model: nn.Module, directory: Path, path: str, layer: int | None, head: int | None, out: Path) -> Path:
    image, pixels = _classifier_image(model, directory, path)
    _, records = attention_maps(model, pixels)
    index, record = _pick(records, "window", layer, default=0)
    layout = record.extra
    nh, nw = layout["windows"]
    weights = _heads(record.weights[: nh * nw], head)  # (nW, N, N) of the image
    token_map = window_attention_map(weights, layout)
    title = f"swin block {index} ({record.name}): windows {layout['window_size'][0]}x{layout['window_size'][1]}, " \
            f"shift {layout['shift_size'][0]}" + (f", head {head}" if head is not None else "")
    return plot_window_attention(image, token_map, layout, out / f"swin-window-{_suffix(index, head)}.png", title)


def _detection(model: nn.Module, directory: Path, path: str, layer: int | None, head: int | None, out: Path,
               threshold: float) -> Path:
    from torchvision import tv_tensors

    prep = DetectionPreprocessing.load(directory)
    image = read_image(path, 3)
    resized = prep.transform()(tv_tensors.Image(image)).as_subclass(Tensor)
    batch = collate_detection([{"image": resized, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                                "image_id": 0, "orig_size": tuple(image.shape[1:])}])
    device = next(model.parameters()).device
    mask = batch["padding_mask"].to(device)
    pixels = normalize_padded(batch["images"].to(device), mask, prep.mean, prep.std)
    output, records = attention_maps(model, pixels, mask)
    index, record = _pick(records, "cross", layer)
    scores, labels = class_probabilities(output.logits[0], class_scores_of(model)).max(-1)  # (Q,) best real class
    scores, labels = scores.cpu(), labels.cpu()
    order = scores.argsort(descending=True)
    keep = order[scores[order] > threshold][:8]
    note = f"score > {threshold}"
    if len(keep) == 0:
        keep, note = order[:3], f"no query scores above {threshold}: the 3 most confident"
    h, w = image.shape[1:]
    boxes = box_cxcywh_to_xyxy(output.boxes[0].float().cpu()[keep]) * torch.tensor([w, h, w, h])  # (K, 4) pixels
    gh, gw = record.extra["grid"]
    heat = _heads(record.weights, head)[0][keep].view(len(keep), gh, gw)  # (K, gh, gw)
    captions = [f"query {int(q)}: {prep.class_names[int(labels[q])]} {float(scores[q]):.2f}" for q in keep]
    title = f"DETR decoder layer {index} cross-attention ({note})" + (f", head {head}" if head is not None else "")
    return plot_object_attention(image, heat, boxes, captions, out / f"detr-objects-{_suffix(index, head)}.png",
                                 title)


def draw_attention(
    checkpoint: str | Path,
    input: str,
    out_dir: str | Path,
    layer: int | None = None,
    head: int | None = None,
    device: str = "auto",
    threshold: float = 0.5,
) -> list[Path]:
    """Draws the attention of a checkpoint's model for one input (see the module docstring) and returns the PNGs.

    Args:
        checkpoint: a checkpoint or run directory (with its tokenizer, or ``preprocessing.json`` for images).
        input: the text (text families) or an image file (image families).
        out_dir: where the PNGs go (created).
        layer: which attention layer (0-based among the layers of the kind drawn); default as documented above.
        head: one head; default all (one panel each) or their mean.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        threshold: DETR: draw the objects scoring above it.

    Raises:
        ValueError: a family without attention, a layer or head out of range, an input the model cannot take.
        FileNotFoundError: a missing checkpoint, tokenizer, preprocessing file or image.
    """
    check_text(input, "input")
    directory = resolve_checkpoint_dir(checkpoint)
    model = from_pretrained(directory, device=resolve_device(device)).eval()
    family = getattr(model, "family", type(model).__name__)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if family in IMAGE_FAMILIES and not Path(input).is_file():
        raise FileNotFoundError(f"a {family!r} model takes an image: INPUT {input!r} is not a file")
    if family in TEXT_FAMILIES:
        path = _self_attention_text(model, directory, input, layer, head, out)
    elif family in TRANSLATION_FAMILIES:
        path = _alignment(model, directory, input, layer, head, out)
    elif family == "swin":
        path = _windows(model, directory, input, layer, head, out)
    elif family == "detr":
        path = _detection(model, directory, input, layer, head, out, threshold)
    elif family in IMAGE_FAMILIES:
        path = _rollout(model, directory, input, layer, head, out)
    else:
        raise ValueError(f"{directory} holds a {family!r} model, which has no attention to draw")
    return [path]


__all__ = ["draw_attention", "token_labels"]

