"""Tiny real models, a shuffled epoch loader and a copy task shared by the training tests."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import formers
from formers.training.task import StepOutput

VOCAB = 24
SEQ = 6


def tiny_transformer(dropout: float = 0.1, seed: int = 0) -> nn.Module:
    """A 1+1 layer, 32-wide Transformer with tied embeddings (a few thousand parameters)."""
    torch.manual_seed(seed)
    return formers.create_model(
        "transformer_tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, embed_dim=32, ffn_dim=64, num_heads=2,
        num_encoder_layers=1, num_decoder_layers=1, dropout=dropout, max_seq_len=16,
    )


def copy_data(n: int, seed: int = 0) -> dict[str, Tensor]:
    """Random source sentences (N, S) whose target is the source itself."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (n, SEQ), generator=g)
    bos = torch.full((n, 1), 1)
    return {"src_ids": src, "tgt_in": torch.cat([bos, src[:, :-1]], dim=1), "tgt_out": src.clone()}


class ShuffledLoader:
    """Batches of a dict of tensors in an order fixed by ``(seed, epoch)``."""

    def __init__(self, data: dict[str, Tensor], batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.data, self.batch_size, self.seed, self.shuffle = data, batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        n = len(next(iter(self.data.values())))
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(1000 * self.seed + self.epoch))
        else:
            order = torch.arange(n)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield {k: v[idx] for k, v in self.data.items()}


class CopyTask:
    """Teacher-forced cross-entropy on the copy data; ``evaluate`` returns loss and token accuracy."""

    def __init__(self) -> None:
        self.calls = 0

    def training_step(self, model: nn.Module, batch: dict[str, Tensor]) -> StepOutput:
        self.calls += 1
        src = batch["src_ids"]
        mask = torch.ones_like(src, dtype=torch.bool)
        logits = model(src, batch["tgt_in"], mask, mask).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten())
        acc = (logits.argmax(-1) == batch["tgt_out"]).float().mean()
        return StepOutput(loss=loss, metrics={"acc": acc}, num_tokens=batch["tgt_out"].numel())

    def evaluate(self, model: nn.Module, eval_loader: Any) -> dict[str, float]:
        losses, accs = [], []
        for batch in eval_loader:
            src = batch["src_ids"]
            mask = torch.ones_like(src, dtype=torch.bool)
            logits = model(src, batch["tgt_in"], mask, mask).logits
            losses.append(F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten()))
            accs.append((logits.argmax(-1) == batch["tgt_out"]).float().mean())
        return {"loss": float(torch.stack(losses).mean()), "acc": float(torch.stack(accs).mean())}


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    return tiny_transformer


@pytest.fixture
def make_loader() -> Callable[..., ShuffledLoader]:
    def make(n: int = 24, batch_size: int = 4, seed: int = 0, shuffle: bool = True, data_seed: int = 0):
        return ShuffledLoader(copy_data(n, data_seed), batch_size, seed, shuffle)

    return make


@pytest.fixture
def task_cls() -> type[CopyTask]:
    return CopyTask


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models gain nothing from intra-op threads, and on a busy CI machine their spin-waits cost seconds.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_plots(monkeypatch) -> None:
    """Skips drawing curves.png (a second per evaluation on a busy CPU; tests/training/test_trainer.py checks it)."""
    from formers.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "_plot", lambda self: None)
