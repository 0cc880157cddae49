"""End-of-row bookkeeping on the host, shared by every causal decoding path: eos, ``stop``, streamer, results.

Each path hands :class:`Rows` the B new ids of each step in order: the eager loop after every step, the static
(CUDA-graph) decoder in bursts every few steps. Ids of a row that has already ended are replaced by the fill id
here, so a path that keeps computing ended rows on the device (their results are independent of the other rows)
returns exactly what the eager path returns, and ``streamer`` and ``stop`` see the same calls in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Streamer = Callable[[list[int]], None]
"""Called once per step with the B new token ids (rows that had already ended get the fill id). The eager path
calls it after every step; the fast path calls it for every step of a burst of steps at once."""


class Rows:
    """What every row has generated, which rows have ended, and the output in both forms.

    Args:
        batch: rows B.
        eos_id: ends a row (kept in the tensor output, dropped from the lists); None: never.
        fill: id written for rows that have ended.
        stop: called with a row's generated ids after each step (after ``streamer``); True ends that row.
        streamer: called with the B ids of each step.
    """

    def __init__(
        self,
        batch: int,
        eos_id: int | None,
        fill: int,
        stop: Callable[[list[int]], bool] | None,
        streamer: Streamer | None,
    ) -> None:
        self.eos_id, self.fill, self.stop, self.streamer = eos_id, fill, stop, streamer
        self.ended = [False] * batch
        self.kept = [0] * batch  # tokens each row returns as a list
        self.rows: list[list[int]] = [[] for _ in range(batch)]
        self.columns: list[list[int]] = []

    @property
    def all_ended(self) -> bool:
        return all(self.ended)

    def push(self, new: list[int]) -> bool:
        """Records one step's ids (B,) and returns whether every row has now ended."""
        new = [self.fill if done else tok for tok, done in zip(new, self.ended)]
        self.columns.append(new)
        if self.streamer is not None:
            self.streamer(new)
        for b, tok in enumerate(new):
            if self.ended[b]:
                continue
            self.rows[b].append(tok)
            if self.eos_id is not None and tok == self.eos_id:
                self.ended[b] = True
                continue
            self.kept[b] += 1
            if self.stop is not None and self.stop(self.rows[b]):
                self.ended[b] = True
        return self.all_ended

    def result(self, as_lists: bool, device: torch.device) -> Tensor | list[list[int]]:
        """B lists without the fill and the final eos, or the (B, T_new) ids on ``device``."""
        if as_lists:
            return [row[:n] for row, n in zip(self.rows, self.kept)]
        return torch.tensor(self.columns, dtype=torch.long, device=device).T.contiguous()  # (B, T_new)
