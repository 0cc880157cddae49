"""Data-parallel training under ``torchrun``, applied from outside the model: DDP, FSDP2 and activation checkpointing.

A run launched by ``torchrun --nproc_per_node N`` (or ``formers train --nproc-per-node N``) has ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; :func:`init_distributed` then joins the process group (NCCL
on CUDA, gloo on CPU) and gives each rank its device (``cuda:LOCAL_RANK``). The model code stays single-device:

- ``parallel: ddp``: :class:`torch.nn.parallel.DistributedDataParallel` around the model for the training steps
  (a full replica per rank; gradients all-reduced, averaged).
- ``parallel: fsdp``: FSDP2, ``torch.distributed.fsdp.fully_shard`` on every block (:func:`find_blocks`) and then
  on the root; parameters, gradients and optimizer state are sharded, and with bf16 autocast a
  ``MixedPrecisionPolicy`` computes in bf16 and reduces gradients in float32. The optimizer is built after sharding.
- ``activation_checkpointing``: every block's ``forward`` runs under non-reentrant ``torch.utils.checkpoint``
  (the instance's ``forward`` is replaced, so parameter names and checkpoints do not change); one device too.

Data: every rank iterates the same global batch stream (same loader, same seed, same position) and keeps its
contiguous slice of each batch (:class:`RankSlices`); so a run on N ranks sees exactly the batches of a run on one
process with the same global batch, the data position is the same on every rank (saved once, with the ranks'
positions checked equal), and a checkpoint resumes on any number of ranks. Each rank reads the whole batch and
keeps 1/N of it: simple and exact, at the cost of reading N times the data.

Checkpoints keep the single-process format (safetensors + JSON): with FSDP the full model and optimizer state are
gathered to rank 0 (``get_model_state_dict`` / ``get_optimizer_state_dict`` with ``full_state_dict=True,
cpu_offload=True``; optimizer state keyed by index as ``Optimizer.state_dict`` does), and loaded back by every rank
with ``set_model_state_dict`` / ``set_optimizer_state_dict``. Only rank 0 writes files, logs and draws.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from formers.devices import resolve_device

_CHECKPOINTED = "_formers_checkpointed_forward"


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: global rank (0 on one process).
        world_size: processes in the run (1: not distributed).
        local_rank: rank on this machine (picks the GPU).
        device: this rank's device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Waits for every rank (nothing on one process)."""
        if self.active:
            dist.barrier()

    def mean(self, values: Tensor) -> Tensor:
        """The element-wise mean of ``values`` over the ranks (``values`` itself on one process)."""
        if not self.active:
            return values
        values = values.detach().clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.strip().lstrip("-").isdigit():
        raise ValueError(f"environment variable {name} must be an integer (set by torchrun), got {value!r}")
    return int(value)


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one rank (``WORLD_SIZE`` > 1)."""
    world = _env_int("WORLD_SIZE")
    return world is not None and world > 1 and _env_int("RANK") is not None


def init_distributed(device: str = "auto") -> DistContext:
    """Joins the ``torchrun`` process group when launched by it (idempotent), else describes one process.

    Args:
        device: the recipe's ``train.device``: ``"auto"``/``"cuda"`` take ``cuda:LOCAL_RANK`` under torchrun when
            CUDA is available (NCCL), ``"cpu"`` (or no CUDA) uses gloo.

    Returns:
        This rank's :class:`DistContext`.
    """
    if not launched():
        return DistContext(device=resolve_device(device))
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK") or 0
    assert rank is not None and world is not None
    if not 0 <= rank < world:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE={world}), got {rank}")
    if device != "cpu" and torch.cuda.is_available():
        target = torch.device("cuda", local)
        torch.cuda.set_device(target)
    elif device.startswith("cuda"):
        raise ValueError(f"train.device={device!r} but CUDA is not available on rank {rank}")
    else:
        target = torch.device("cpu")
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    if dist.get_world_size() != world:
        raise ValueError(f"the process group has {dist.get_world_size()} ranks, WORLD_SIZE says {world}")
    return DistContext(rank, world, local, target)


def shutdown_distributed(wait: bool = False) -> None:
    """Leaves the process group if one was joined; with ``wait``, first waits for every rank to get here.

    A run that ends normally waits (rank 0 still writes the final report while the others are done): a rank that
    left the group and exited while its peer still held the connection was seen to abort in Gloo's teardown
    ("terminate called without an active exception"). A failing rank does not wait, so that it exits at once.
    ``formers train`` calls it; a script driving :class:`~formers.training.trainer.Trainer` under ``torchrun`` itself
    calls ``shutdown_distributed(wait=True)`` once it is done.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------- model


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: the elements of its ``nn.ModuleList``s (innermost ones, e.g. Swin's blocks
    rather than its stages) that have submodules of their own (DETR's lists of plain ``Linear`` layers are not
    blocks). In ``model.modules()`` order."""
    lists = [lst for lst in model.modules() if isinstance(lst, nn.ModuleList)]
    candidates = {id(m) for lst in lists for m in lst if next(m.children(), None) is not None}
    blocks = []
    for m in model.modules():
        if id(m) in candidates and not any(id(d) in candidates for d in m.modules() if d is not m):
            blocks.append(m)
    return blocks


def checkpoint_blocks(model: nn.Module) -> int:
    """Makes every block (:func:`find_blocks`) recompute its activations in the backward pass (non-reentrant
    ``torch.utils.checkpoint``, which restores the RNG state so dropout draws the same masks). Idempotent; the
    parameters and their names are untouched. Returns the number of blocks."""
    blocks = find_blocks(model)
    if not blocks:
        raise ValueError(f"activation_checkpointing found no blocks (nn.ModuleList elements) in {type(model).__name__}")
    for block in blocks:
        if _CHECKPOINTED in block.__dict__:
            continue
        plain = block.forward  # the bound method of the class

        def forward(*args: Any, _plain: Any = plain, **kwargs: Any) -> Any:
            if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
                return _plain(*args, **kwargs)
            return checkpoint(_plain, *args, use_reentrant=False, **kwargs)

        block.__dict__[_CHECKPOINTED] = plain
        block.forward = functools.wraps(plain)(forward)
    return len(blocks)


def shard_model(model: nn.Module, ctx: DistContext, precision: str = "fp32") -> nn.Module:
    """FSDP2: ``fully_shard`` on each block, then on the root (idempotent); bf16/fp16 precision adds a
    ``MixedPrecisionPolicy`` (parameters cast for compute, gradients reduced in float32). Returns ``model``, sharded
    in place (its parameters become DTensors: build the optimizer afterwards)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    if isinstance(model, FSDPModule):
        return model
    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    kwargs: dict[str, Any] = {"mesh": mesh}
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for block in find_blocks(model):
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def prepare_model(model: nn.Module, parallel: str, activation_checkpointing: bool, precision: str,
                  ctx: DistContext) -> nn.Module:
    """What must happen to the model before its optimizer is built: activation checkpointing, then FSDP sharding
    (on a multi-rank run). Idempotent; returns ``model`` (changed in place)."""
    if ctx.active and parallel == "none":
        raise ValueError(f"launched on {ctx.world_size} ranks (torchrun) but train.parallel='none'; set "
                         "train.parallel=ddp or fsdp (--set train.parallel=ddp)")
    if activation_checkpointing:
        checkpoint_blocks(model)
    if ctx.active and parallel == "fsdp":
        shard_model(model, ctx, precision)
    return model


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP2 ``fully_shard`` was applied to ``model``."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def step_module(model: nn.Module, parallel: str, ctx: DistContext) -> nn.Module:
    """The module the training steps call: DDP around ``model`` for ``parallel='ddp'`` on several ranks, else
    ``model`` itself (an FSDP model is its own wrapper)."""
    if ctx.active and parallel == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


# ---------------------------------------------------------------- data


@contextlib.contextmanager
def rank_rng(ctx: DistContext, seed: int, epoch: int, batch: int) -> Iterator[None]:
    """On several ranks, runs the block with torch generators seeded by ``(seed, epoch, batch, rank)`` and puts them
    back afterwards: each rank draws its own dropout masks for its slice (the same seed everywhere would repeat them
    on every rank), reproducibly on resume. Nothing changes on one process."""
    if not ctx.active:
        yield
        return
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((((seed * 1_000_003 + epoch) * 1_000_003 + batch) * 4099 + ctx.rank) % 2**63)
        yield


def _first_size(batch: Any) -> int | None:
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.ndim else None
    if isinstance(batch, Mapping):
        values: Any = batch.values()
    elif isinstance(batch, (list, tuple)):
        values = batch
    elif dataclasses.is_dataclass(batch):
        values = [getattr(batch, f.name) for f in dataclasses.fields(batch)]
    else:
        return None
    for v in values:
        size = _first_size(v)
        if size is not None:
            return size
    return len(batch) if isinstance(batch, list) else None


def _slice(x: Any, start: int, stop: int, size: int) -> Any:
    if isinstance(x, Tensor):
        return x[start:stop] if x.ndim and x.shape[0] == size else x
    if isinstance(x, Mapping):
        return {k: _slice(v, start, stop, size) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # namedtuple
        return type(x)(*(_slice(v, start, stop, size) for v in x))
    if isinstance(x, tuple):
        return tuple(_slice(v, start, stop, size) for v in x)
    if isinstance(x, list):  # a list of B items (per-example targets) is sliced; other lists are structure
        return x[start:stop] if len(x) == size else [_slice(v, start, stop, size) for v in x]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: _slice(getattr(x, f.name), start, stop, size)
                                         for f in dataclasses.fields(x) if f.init})
    return x


def shard_batch(batch: Any, rank: int, world_size: int) -> Any:
    """Rank ``rank``'s contiguous slice of a global batch: every tensor whose first dimension is the batch size
    (that of the first tensor found) and every list of that length, in dicts, tuples, lists and dataclasses.

    Raises:
        ValueError: the batch has fewer examples than there are ranks, or no tensor to take its size from.
    """
    size = _first_size(batch)
    if size is None:
        raise ValueError(f"cannot split a {type(batch).__name__} batch over ranks: no tensor or list gives its size")
    if size < world_size:
        raise ValueError(f"a batch of {size} examples cannot be split over {world_size} ranks; raise the batch size")
    return _slice(batch, size * rank // world_size, size * (rank + 1) // world_size, size)


class RankSlices:
    """Wraps an epoch loader: yields this rank's slice (:func:`shard_batch`) of each of its global batches.

    ``set_epoch``, ``len`` and (when the loader has them) ``state_dict`` / ``load_state_dict`` are the loader's: the
    position in the global stream is the same on every rank.
    """

    def __init__(self, loader: Any, rank: int, world_size: int) -> None:
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield shard_batch(batch, self.rank, self.world_size)

    def __getattr__(self, name: str) -> Any:
        if name in ("state_dict", "load_state_dict"):
            return getattr(self.__dict__["loader"], name)
        raise AttributeError(name)


# ---------------------------------------------------------------- full state of a sharded model


class FullModelState:
    """Stands for a model in :func:`formers.training.checkpoint.write_checkpoint`: ``family`` and ``config`` are the
    model's, ``state_dict()`` the full state gathered to rank 0."""

    def __init__(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        first: dict[int, str] = {}
        for name, p in model.named_parameters(remove_duplicate=False):  # a tied parameter is saved once, by its
            if first.setdefault(id(p), name) != name:  # first name, as from one process
                state.pop(name, None)
        for name, t in state.items():  # safetensors saves tensors that own their storage (gathered ones may not)
            if t.untyped_storage().nbytes() != t.numel() * t.element_size():
                state[name] = t.clone()
        self._state = state
        for name in ("family", "config"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def state_dict(self) -> dict[str, Tensor]:
        return self._state


class ShardedModelLoader:
    """Stands for a sharded model in :func:`formers.training.checkpoint.load_checkpoint`: checks read the model's own
    (DTensor) state, ``load_state_dict`` shards a full state into it (``set_model_state_dict``)."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_model"], name)

    def load_state_dict(self, state: Mapping[str, Tensor], strict: bool = False) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        set_model_state_dict(self._model, dict(state), options=StateDictOptions(full_state_dict=True, strict=strict))


def _names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """Per parameter group, the parameters' names (``Optimizer.state_dict`` numbers them in this order)."""
    names = {id(p): n for n, p in model.named_parameters()}  # a tied parameter: its first name, as DCP
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


class FullOptimizerState:
    """Stands for an optimizer in checkpoints: ``state_dict()`` is the full state, keyed by parameter index as
    ``Optimizer.state_dict`` keys it (so it loads into a one-process optimizer), and ``load_state_dict`` shards such a
    state back (``set_optimizer_state_dict``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any] | None = None) -> None:
        self.model, self.optimizer, self._state = model, optimizer, state

    def state_dict(self) -> dict[str, Any]:
        assert self._state is not None
        index = {n: i for i, n in enumerate(n for group in _names(self.model, self.optimizer) for n in group)}
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in self._state["param_groups"]]
        return {"state": {index[n]: s for n, s in self._state["state"].items()}, "param_groups": groups}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        flat = [n for group in _names(self.model, self.optimizer) for n in group]
        groups = [{**g, "params": [flat[i] for i in g["params"]]} for g in state["param_groups"]]
        full = {"state": {flat[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(self.model, self.optimizer, full, options=StateDictOptions(full_state_dict=True))


def gather_full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[FullModelState, FullOptimizerState]:
    """Collective (every rank calls it): the full model and optimizer state of a sharded model, on rank 0's CPU
    (empty on the other ranks), wrapped for :func:`formers.training.checkpoint.write_checkpoint`."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    return FullModelState(model, model_state), FullOptimizerState(model, optimizer, optim_state)


def rank_positions(epoch: int, batch_in_epoch: int, ctx: DistContext) -> list[list[int]]:
    """Every rank's data position ``[epoch, batch_in_epoch]`` (collective on several ranks).

    Raises:
        RuntimeError: the ranks disagree (they read one global batch stream, so they never should).
    """
    local = torch.tensor([epoch, batch_in_epoch], dtype=torch.int64, device=ctx.device)
    if not ctx.active:
        return [local.tolist()]
    gathered = [torch.zeros_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, local)
    positions = [t.tolist() for t in gathered]
    if any(p != positions[0] for p in positions):
        raise RuntimeError(f"the ranks' data positions [epoch, batch] differ: {positions}")
    return positions
