"""What each served model does for one request, as JSON-ready dicts: the result and its attention view.

Every function takes the :class:`~formers.serve.models.ServedModel` and holds its lock while the model runs, checks
its input first (a ``ValueError``/``TypeError`` naming the field becomes a 400), and reads no file. Generation
streams: :func:`stream_generate` yields one JSON line per piece of text as the tokens are made, then a final line
with the whole text and the attention view.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from formers.data.images import decode_image
from formers.generation.causal_lm import check_sampling_options
from formers.inference.embedding import embed_texts
from formers.inference.text_stream import TextStream
from formers.inference.translate import Translator
from formers.layers import check_text
from formers.serve.attention_view import attention_view, image_labels, token_labels
from formers.serve.models import Limits, ServedModel


def check_length(text: str, name: str, limits: Limits) -> None:
    """Raises a ValueError naming ``name`` when ``text`` is longer than the server's limit."""
    check_text(text, name)
    if len(text) > limits.max_text_chars:
        raise ValueError(f"{name} has {len(text)} characters, more than this server's limit of "
                         f"{limits.max_text_chars}")


def translate(served: ServedModel, text: str, beam: int, limits: Limits) -> dict[str, Any]:
    """``{"translation", "source_tokens", "target_tokens", "attention"}`` of one sentence."""
    check_length(text, "text", limits)
    if not text.strip():
        raise ValueError("text is empty; give a sentence to translate")
    model, tok = served.model, served.tokenizer
    translator = Translator(model, tok, beam_size=beam, keep_graphs=True)  # lengths recur across requests
    with served.lock, torch.inference_mode():
        src = translator.encode_sources([text])[0]
        ids = translator.translate_ids([text])[0]
        c = model.config
        device = translator.device
        inputs = [c.bos_id, *ids][: c.max_seq_len]  # the decoder's inputs: row t predicts target[t]
        src_t, tgt_t = torch.tensor([src], device=device), torch.tensor([inputs], device=device)  # (1, S), (1, T)
        source, target = token_labels(tok, src), token_labels(tok, [*ids, c.eos_id])[: len(inputs)]

        def labels(record: Any, tq: int, tk: int) -> tuple[list[str], list[str]]:
            if record.kind == "cross":  # the decoder's queries over the source (Luong attention too)
                return target, source
            return (target, target) if record.name.startswith("decoder") else (source, source)

        view = attention_view(model, (src_t, tgt_t), labels, limits.max_attention_values)
    return {"translation": tok.decode(ids), "source_tokens": source, "target_tokens": target, "attention": view}


class _Lines:
    """A text stream whose writes become ``{"text": ...}`` events on a queue."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    def write(self, text: str) -> None:
        if text:
            self.events.put({"text": text})

    def flush(self) -> None:
        pass


def stream_generate(
    served: ServedModel,
    prompt: str,
    max_new_tokens: int,
    limits: Limits,
    greedy: bool = False,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int | None = None,
    stop: list[str] | None = None,
) -> GenerationStream:
    """Checks the request, then returns the stream of JSON lines: ``{"text": piece}`` as each piece of text is
    final, then ``{"done": true, "text", "tokens", "attention"}`` (or ``{"error": message}``).

    The model runs in a thread of its own holding the model's lock; when the client goes away (the stream is
    closed) generation stops at the next token.
    """
    check_length(prompt, "prompt", limits)
    if not 1 <= max_new_tokens <= limits.max_new_tokens:
        raise ValueError(f"max_new_tokens must be in [1, {limits.max_new_tokens}] on this server, got {max_new_tokens}")
    check_sampling_options(max_new_tokens, not greedy, temperature, top_k, None)
    for s in stop or []:
        check_length(s, "stop", limits)
    model, tok = served.model, served.tokenizer
    c = model.config
    ids = tok.encode(prompt)
    if not ids:
        if c.eos_id is None:
            raise ValueError("prompt is empty and the model has no end-of-text token to start from")
        ids = [c.eos_id]
    events: queue.Queue = queue.Queue()
    cancelled = threading.Event()

    def work() -> None:
        try:
            with served.lock, torch.inference_mode():
                stream = TextStream(tok, stop or [], _Lines(events))
                new: list[int] = []

                def on_step(step: list[int]) -> None:
                    if step[0] != c.eos_id:
                        new.append(step[0])
                        stream.push(step[0])

                model.generate(
                    torch.tensor([ids], device=model.embed.weight.device), max_new_tokens, do_sample=not greedy,
                    temperature=temperature, top_k=top_k, seed=seed, streamer=on_step, truncate=True,
                    stop=lambda _row: stream.stopped or cancelled.is_set(),
                )
                stream.finish()
                window = (ids + new)[-c.max_seq_len :]
                labels = token_labels(tok, window)
                view = attention_view(model, (torch.tensor([window], device=model.embed.weight.device),),
                                      lambda _r, _q, _k: (labels, labels), limits.max_attention_values)
            text = tok.decode(new)
            events.put({"done": True, "text": text, "tokens": token_labels(tok, new), "attention": view})
        except Exception as e:  # the stream has begun: the error travels as its last line
            events.put({"error": " ".join(str(e).split()) or type(e).__name__})
        finally:
            events.put(None)

    threading.Thread(target=work, name=f"generate-{served.id}", daemon=True).start()
    return GenerationStream(events, cancelled)


class GenerationStream:
    """The JSON lines of a running generation; :meth:`close` stops it at its next token (the client went away)."""

    def __init__(self, events: queue.Queue, cancelled: threading.Event) -> None:
        self.events, self.cancelled = events, cancelled

    def next_line(self) -> str | None:
        """The next JSON line (waiting for it), or None once the generation has ended."""
        event = self.events.get()
        return None if event is None else json.dumps(event, ensure_ascii=False) + "\n"

    def close(self) -> None:
        self.cancelled.set()

    def __iter__(self) -> Iterator[str]:
        try:
            while (line := self.next_line()) is not None:
                yield line
        finally:
            self.close()


def _image(served: ServedModel, data: bytes, channels: int, limits: Limits) -> torch.Tensor:
    if len(data) > limits.max_upload_bytes:
        raise ValueError(f"the image has {len(data)} bytes, more than this server's limit of {limits.max_upload_bytes}")
    return decode_image(data, channels, "the uploaded image", limits.max_image_pixels)


def classify(served: ServedModel, data: bytes, top_k: int, limits: Limits) -> dict[str, Any]:
    """``{"classes": [{"name", "probability"}...], "width", "height", "attention"}`` of one image."""
    prep = served.preprocessing
    image = _image(served, data, prep.in_channels, limits)
    model = served.model
    device = next(model.parameters()).device
    with served.lock, torch.inference_mode():
        batch = prep(image[None]).to(device)  # (1, C, H, W)
        probs = model(batch).logits.float().softmax(dim=-1)[0]  # (K,)
        values, indices = probs.topk(min(top_k, probs.shape[-1]))
        view = attention_view(model, (batch,), image_labels, limits.max_attention_values)
    classes = [{"name": prep.class_names[i], "probability": round(float(v), 6)}
               for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
    return {"classes": classes, "width": int(image.shape[2]), "height": int(image.shape[1]), "attention": view}


def detect(served: ServedModel, data: bytes, threshold: float, limits: Limits) -> dict[str, Any]:
    """``{"detections": [{"label", "name", "score", "box", "query"}...], "width", "height", "attention"}`` of one
    image (``query``: the object query that found the box, a row of the decoder's attention)."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    image = _image(served, data, 3, limits)
    detector = served.runner
    with served.lock, torch.inference_mode():
        found = detector([image], threshold)[0]
        pixels, mask, _ = detector.inputs([image])
        queries = [f"q{i}" for i in range(served.model.config.num_queries)]

        def labels(record: Any, tq: int, tk: int) -> tuple[list[str] | None, list[str] | None]:
            on_image = image_labels(record, tq, tk)  # the encoder's positions, the keys of the cross-attention
            return (on_image[0] or (queries if tq == len(queries) else None),
                    on_image[1] or (queries if tk == len(queries) else None))

        view = attention_view(served.model, (pixels, mask), labels, limits.max_attention_values)
    records = found.to_records(served.preprocessing.class_names)
    for record, query in zip(records, found.queries.tolist(), strict=True):
        record["query"] = int(query)  # whose attention the page shows for this box
    return {"detections": records, "width": int(image.shape[2]),
            "height": int(image.shape[1]), "attention": view}


def embed(served: ServedModel, sentences: list[str], attention_of: int, limits: Limits) -> dict[str, Any]:
    """``{"similarity": N x N cosines, "dim", "tokens", "attention"}``; the attention is that of sentence
    ``attention_of``."""
    if not 2 <= len(sentences) <= limits.max_sentences:
        raise ValueError(f"sentences must hold 2 to {limits.max_sentences} sentences on this server, "
                         f"got {len(sentences)}")
    for i, s in enumerate(sentences):
        check_length(s, f"sentences[{i}]", limits)
    if not 0 <= attention_of < len(sentences):
        raise ValueError(f"attention_of must be in [0, {len(sentences) - 1}], got {attention_of}")
    encoder, tok, run = served.model, served.tokenizer, served.runner
    with served.lock:
        emb = embed_texts(encoder, tok, sentences, run["max_length"], pooling=run["pooling"],
                          limit_source=run["limit_source"])  # (N, D), checks every sentence
        with torch.inference_mode():
            ids = tok.encode(sentences[attention_of], max_length=run["max_length"], truncation=True)
            device = encoder.embed.weight.device
            ids_t = torch.tensor([ids], device=device)  # (1, T)
            labels = token_labels(tok, ids)
            view = attention_view(encoder, (ids_t, torch.zeros_like(ids_t), torch.ones_like(ids_t, dtype=torch.bool)),
                                  lambda _r, _q, _k: (labels, labels), limits.max_attention_values)
    sims = (emb @ emb.T).clamp(-1.0, 1.0)  # (N, N) cosines of unit vectors
    return {"similarity": sims.double().mul(1e6).round().div(1e6).tolist(), "dim": int(emb.shape[1]), "tokens": labels,
            "attention": view}
