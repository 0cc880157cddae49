"""Fill-mask prediction with a masked-LM model and its WordPiece tokenizer."""

from __future__ import annotations

from torch import nn

from formers.devices import move_to_device


def fill_mask(model: nn.Module, tokenizer, text: str, top_k: int = 3) -> list[list[str]]:
    """The ``top_k`` tokens predicted at each ``[MASK]`` of ``text``, best first."""
    device = next(model.parameters()).device
    batch = move_to_device(tokenizer([text], truncation=True, max_length=model.config.max_seq_len), device)
    logits = model(batch["input_ids"], batch["token_type_ids"], batch["padding_mask"]).logits[0]  # (T, V)
    where = (batch["input_ids"][0] == tokenizer.mask_id).nonzero().flatten()
    return [[tokenizer.id_to_token(i) for i in logits[p].topk(top_k).indices.tolist()] for p in where.tolist()]
