"""The contract every model keeps, checked on a tiny build of every registered variant (float32, CPU).

Cases and tiny sizes come from ``conftest.py`` (``TINY``: family -> ``Tiny``); the input adapters below (``KINDS``)
feed each kind of model. The checks: documented output shapes, all finite; a finite gradient for every parameter;
save -> load gives the same state and outputs; padded or batched rows equal unbatched runs; cached decoding equals
full recomputation; eval-mode outputs are deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import formers
from formers.data.word2vec import huffman_tree

TOL = dict(atol=1e-5, rtol=1e-5)


@dataclass
class Batch:
    """One batched call and how to run each of its rows alone.

    Attributes:
        args: the model's positional inputs.
        real: per token dim of the outputs ("T", "S"), which positions are real tokens, (B, len) bool.
        alone: row index -> the inputs of that row alone, unpadded.
    """

    args: tuple[Any, ...]
    real: dict[str, Tensor]
    alone: Callable[[int], tuple[Any, ...]]

    @property
    def size(self) -> int:
        return len(self.args[0])


class CausalLM:
    """``model(input_ids, padding_mask)`` -> logits (B, T, V); prompts are left padded; ``model.init_cache``."""

    def batches(self, model: nn.Module, tiny: Any) -> list[Batch]:
        ids, mask = self._left_padded(model.config)
        right = torch.ones(1, 7, dtype=torch.bool)
        right[0, 4:] = False
        return [
            Batch((ids, mask), {"T": mask}, lambda i: (ids[i : i + 1, mask[i]],)),
            # Right padding also leaves the real tokens untouched: causality hides the later pads.
            Batch((ids[:1], right), {"T": right}, lambda i: (ids[:1, :4],)),
        ]

    @staticmethod
    def _left_padded(config: Any) -> tuple[Tensor, Tensor]:
        ids = torch.randint(4, config.vocab_size, (3, 7))
        mask = torch.ones(3, 7, dtype=torch.bool)
        mask[1, :2] = False
        mask[2, :5] = False
        ids[~mask] = 0
        return ids, mask

    def check_decoding(self, model: nn.Module) -> None:
        ids, mask = self._left_padded(model.config)
        full = model(ids, mask).logits
        state = model.init_cache(3, max_len=10)
        chunks = [model(ids[:, :4], mask[:, :4], cache=state).logits]  # row 2 is all padding in this chunk
        chunks += [model(ids[:, t : t + 1], mask[:, t : t + 1], cache=state).logits for t in range(4, 7)]
        torch.testing.assert_close(torch.cat(chunks, 1)[mask], full[mask], **TOL)
        assert state.length == 7 and state.num_real.tolist() == [7, 5, 2]
        plain = model(ids[:1]).logits  # no padding: the causal fast path, token by token
        state = model.init_cache(1, max_len=7)
        steps = torch.cat([model(ids[:1, t : t + 1], cache=state).logits for t in range(7)], 1)
        torch.testing.assert_close(steps, plain, **TOL)


class Seq2Seq:
    """``model(src_ids, tgt_ids, src_padding_mask, tgt_padding_mask)`` -> logits (B, T_tgt, V); right padding;
    incremental decoding through ``model.encode`` / ``model.init_state`` / ``model.decode``."""

    def batches(self, model: nn.Module, tiny: Any) -> list[Batch]:
        src, tgt, src_mask = self._batch(model.config)
        tgt_mask = torch.ones_like(tgt, dtype=torch.bool)
        tgt_mask[2, 3:] = False
        tgt = tgt.masked_fill(~tgt_mask, model.config.pad_id)
        alone = lambda i: (src[i : i + 1, src_mask[i]], tgt[i : i + 1, tgt_mask[i]])
        return [Batch((src, tgt, src_mask, tgt_mask), {"S": src_mask, "T": tgt_mask}, alone)]

    @staticmethod
    def _batch(config: Any) -> tuple[Tensor, Tensor, Tensor]:
        first = max(config.pad_id, config.bos_id, config.eos_id) + 1
        src = torch.randint(first, config.src_vocab_size, (3, 7))
        tgt = torch.randint(first, config.tgt_vocab_size, (3, 5))
        tgt[:, 0] = config.bos_id
        src_mask = torch.ones_like(src, dtype=torch.bool)
        src_mask[1, 4:] = False
        return src.masked_fill(~src_mask, config.pad_id), tgt, src_mask

    def check_decoding(self, model: nn.Module) -> None:
        src, tgt, src_mask = self._batch(model.config)
        full = model(src, tgt, src_mask).logits
        memory, mask = model.encode(src, src_mask)
        state = model.init_state(memory, mask, max_len=8)
        steps = [model.decode(tgt[:, :2], None, None, state=state)]  # a two-token prefix, then one at a time
        steps += [model.decode(tgt[:, t : t + 1], None, None, state=state) for t in range(2, tgt.shape[1])]
        torch.testing.assert_close(torch.cat(steps, 1), full, **TOL)
        assert state.length == tgt.shape[1]


class Encoder:
    """Bidirectional encoder: ``model(input_ids, token_type_ids, padding_mask)``, right padded."""

    def batches(self, model: nn.Module, tiny: Any) -> list[Batch]:
        c = model.config
        mask = torch.ones(3, 7, dtype=torch.bool)
        mask[1, 5:] = False
        mask[2, 2:] = False
        ids = torch.randint(1, c.vocab_size, (3, 7)).masked_fill(~mask, c.pad_id)
        types = torch.zeros(3, 7, dtype=torch.long)
        types[0, 4:] = 1
        types[1, 3:5] = 1
        return [Batch((ids, types, mask), {"T": mask}, lambda i: (ids[i : i + 1, mask[i]], types[i : i + 1, mask[i]]))]


class Image:
    """Image model: ``model(images)`` with images (B, C, H, W)."""

    def batches(self, model: nn.Module, tiny: Any) -> list[Batch]:
        c = model.config
        height, width = tiny.image_size or (c.image_size, c.image_size)
        images = torch.randn(3, c.in_channels, height, width)
        return [Batch((images,), {}, lambda i: (images[i : i + 1],))]


class WordExamples:
    """word2vec: ``model(inputs, targets, input_mask, negatives, points, codes, path_mask)`` -> per-example loss (B,);
    CBOW windows are right padded (``input_mask``), each example is scored alone."""

    def batches(self, model: nn.Module, tiny: Any) -> list[Batch]:
        c = model.config
        targets = torch.tensor([3, 0, 11])
        if c.architecture == "skipgram":
            inputs, mask = torch.tensor([5, 5, 19]), None
        else:
            inputs = torch.randint(0, c.vocab_size, (3, 4))
            mask = torch.tensor([[True] * 4, [True, True, False, False], [True, True, True, False]])
            inputs = inputs.masked_fill(~mask, 0)
        negatives = torch.randint(0, c.vocab_size, (3, c.negative)) if c.negative else None
        points = codes = path_mask = None
        if c.hierarchical_softmax:
            tree = huffman_tree(np.arange(2 * c.vocab_size, c.vocab_size, -1))
            points, codes = torch.from_numpy(tree.points)[targets], torch.from_numpy(tree.codes)[targets]
            path_mask = torch.arange(tree.max_length)[None, :] < torch.from_numpy(tree.lengths)[targets][:, None]
        args = (inputs, targets, mask, negatives, points, codes, path_mask)

        def alone(i: int) -> tuple[Any, ...]:
            row = [a[i : i + 1] if a is not None else None for a in args]
            if mask is not None:
                row[0], row[2] = inputs[i : i + 1, mask[i]], mask[i : i + 1, mask[i]]
            return tuple(row)

        return [Batch(args, {}, alone)]


KINDS = {
    "causal_lm": CausalLM(), "seq2seq": Seq2Seq(), "encoder": Encoder(), "image": Image(), "word2vec": WordExamples()
}


def kind(case: Any) -> Any:
    """The input adapter of the case's kind; fails saying what to add when there is none."""
    tiny = case.tiny
    if tiny.kind not in KINDS:
        pytest.fail(
            f"family {case.family!r} declares kind {tiny.kind!r}, which has no input adapter: add one to KINDS in "
            f"tests/models/test_contract.py (known kinds: {sorted(KINDS)})",
            pytrace=False,
        )
    return KINDS[tiny.kind]


def outputs(model: nn.Module, args: tuple[Any, ...]) -> dict[str, Tensor]:
    """The tensor fields of the model's output object."""
    out = model(*args)
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    return {name: value for name, value in fields.items() if isinstance(value, Tensor)}


def expected_shape(dims: tuple[str | int, ...], config: Any, batch: Batch) -> tuple[int, ...]:
    sizes = {"B": batch.size, **{dim: real.shape[1] for dim, real in batch.real.items()}}
    return tuple(d if isinstance(d, int) else sizes[d] if d in sizes else getattr(config, d) for d in dims)


def tied(model: nn.Module) -> list[list[str]]:
    """The groups of parameter names that share one tensor (tied embeddings and output projections)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return sorted(names for names in groups.values() if len(names) > 1)


def has_dropout(model: nn.Module) -> bool:
    """Whether any module (Dropout, DropPath) drops with a positive probability in training."""
    return any(isinstance(getattr(m, "p", None), float) and m.p > 0 for m in model.modules())


def test_forward_gives_the_documented_shapes_all_finite(case):
    model = case.build().eval()
    for batch in kind(case).batches(model, case.tiny):
        out = outputs(model, batch.args)
        declared = case.tiny.outputs
        assert set(out) == set(declared), f"output tensors {sorted(out)}, TINY declares {sorted(declared)}"
        for name, value in out.items():
            assert value.shape == expected_shape(declared[name], model.config, batch), name
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), name


def test_every_parameter_gets_a_finite_gradient(case):
    model = case.build().train()
    batch = kind(case).batches(model, case.tiny)[0]
    sum(value.square().mean() for value in outputs(model, batch.args).values()).backward()
    params = dict(model.named_parameters())
    unknown = set(case.tiny.no_grad) - set(params)
    assert not unknown, f"TINY's no_grad names parameters the model does not have: {sorted(unknown)}"
    for name, p in params.items():
        if name in case.tiny.no_grad:
            assert p.grad is None or not p.grad.any(), f"{name} is declared gradient-free but gets a gradient"
        else:
            assert p.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(p.grad).all() and p.grad.any(), f"{name}: gradient not finite or all zero"


def test_save_then_load_gives_the_same_state_and_outputs(case, tmp_path):
    model = case.build().eval()
    formers.save_pretrained(model, tmp_path / "m")
    loaded = formers.from_pretrained(tmp_path / "m").eval()
    assert type(loaded) is type(model) and loaded.config == model.config
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert list(loaded_state) == list(state)
    for key, value in state.items():
        assert loaded_state[key].dtype == value.dtype and torch.equal(loaded_state[key], value), key
    # Derived buffers (relative-position indices, attention masks) are rebuilt, not stored; ties survive.
    buffers = {name for name, _ in model.named_buffers()}
    assert not [k for k in state if k in buffers and ("index" in k or "mask" in k)]
    assert tied(loaded) == tied(model)
    for batch in kind(case).batches(model, case.tiny):
        ours, theirs = outputs(model, batch.args), outputs(loaded, batch.args)
        for name in ours:
            torch.testing.assert_close(theirs[name], ours[name], atol=0, rtol=0)


def test_padded_or_batched_rows_equal_unbatched_runs(case):
    model = case.build().eval()
    for batch in kind(case).batches(model, case.tiny):
        out = outputs(model, batch.args)
        for i in range(batch.size):
            alone = outputs(model, batch.alone(i))
            for name, dims in case.tiny.outputs.items():
                row = out[name][i]
                for d, dim in enumerate(dims[1:]):  # keep the real positions of each token dim
                    if dim in batch.real:
                        row = row.index_select(d, batch.real[dim][i].nonzero()[:, 0])
                torch.testing.assert_close(row, alone[name][0], **TOL, msg=lambda m, n=name, r=i: f"{n}, row {r}: {m}")


@pytest.mark.contract_kinds("causal_lm", "seq2seq")
def test_cached_decoding_equals_full_recomputation(case):
    model = case.build().eval()
    kind(case).check_decoding(model)


def test_eval_outputs_are_deterministic(case):
    model = case.build().eval()
    batch = kind(case).batches(model, case.tiny)[0]
    first = outputs(model, batch.args)
    torch.manual_seed(1)
    for name, value in outputs(model, batch.args).items():
        torch.testing.assert_close(value, first[name], atol=0, rtol=0)
    if has_dropout(model):  # and training does drop, so the check above is not vacuous
        model.train()
        a, b = outputs(model, batch.args), outputs(model, batch.args)
        assert any(not torch.equal(a[name], b[name]) for name in a)
