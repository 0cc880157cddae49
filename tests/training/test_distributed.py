"""Data-parallel training (formers.training.distributed): CPU, gloo, 2 processes started by `formers train
--nproc-per-node 2` (torchrun), against one process with the same global batch.

Tolerances: per-step losses agree to 1e-5 relative (measured: ~1e-7, the float summation order of the ranks'
all-reduce); after 6 AdamW steps the models' logits agree to 1e-4 absolute. Weights are not compared one by one across
different numbers of ranks: parameters whose true gradient is zero (the key bias, which softmax ignores) get float
noise as gradient, and Adam turns any noise into an lr-sized step. A run resumed on the same number of ranks ends with
the same weights as the uninterrupted one to 1e-6.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml

import formers
from formers.cli.main import main
from formers.files import load_safetensors
from formers.training.checkpoint import (
    LATEST_NAME,
    checkpoints_dir,
    load_state,
    step_dir_name,
)
from formers.training.distributed import (
    DistContext,
    RankSlices,
    checkpoint_blocks,
    find_blocks,
    prepare_model,
    shard_batch,
)
from formers.training.trainer import TrainerConfig

SRC = Path(formers.__file__).resolve().parents[1]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 60
STEPS = 6


# ---------------------------------------------------------------- one process


def tiny_gpt(dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return formers.create_model("gpt_mini", vocab_size=30, eos_id=None, max_seq_len=16, embed_dim=32, num_layers=2,
                                num_heads=2, dropout=dropout, attn_dropout=dropout)


def test_blocks_are_the_innermost_module_list_elements_with_children():
    gpt = tiny_gpt()
    assert find_blocks(gpt) == list(gpt.layers)
    swin = formers.create_model("swin_mini_28")
    blocks = find_blocks(swin)
    assert len(blocks) == sum(swin.config.depths) and all(not isinstance(b, torch.nn.ModuleList) for b in blocks)
    assert blocks == [b for stage in swin.stages for b in stage.blocks]  # the blocks, not the stages


def test_activation_checkpointing_gives_the_same_gradients_with_dropout():
    x = torch.randint(0, 30, (3, 16))
    grads = []
    for checkpointed in (False, True):
        model = tiny_gpt(dropout=0.2)
        names = sorted(model.state_dict())
        if checkpointed:
            assert checkpoint_blocks(model) == 2 and checkpoint_blocks(model) == 2  # idempotent
            assert sorted(model.state_dict()) == names  # parameter names (checkpoints) unchanged
        torch.manual_seed(1)
        model(x, targets=x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, rtol=0, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for g in grads[1].values())


def test_checkpointed_blocks_recompute_in_backward_and_not_without_gradients():
    model = tiny_gpt()
    runs = []
    plain_forward = model.layers[0].forward
    model.layers[0].forward = lambda *a, **k: (runs.append(1), plain_forward(*a, **k))[1]  # counts every run
    checkpoint_blocks(model)
    x = torch.randint(0, 30, (2, 16))
    model(x, targets=x).loss.backward()
    assert len(runs) == 2  # forward, then again in backward
    with torch.no_grad():
        model(x)
    assert len(runs) == 3


def test_shard_batch_splits_every_batch_structure_on_its_first_dimension():
    Pair = namedtuple("Pair", "images labels")

    @dataclasses.dataclass
    class Batch:
        ids: torch.Tensor
        targets: list
        name: str = "b"

    ids = torch.arange(10).view(5, 2)
    batch = {"ids": ids, "scalar": torch.tensor(3.0), "pair": Pair(torch.zeros(5, 1), torch.arange(5)),
             "targets": [{"boxes": torch.zeros(i, 4)} for i in range(5)], "data": Batch(ids, list("abcde"))}
    first, second = shard_batch(batch, 0, 2), shard_batch(batch, 1, 2)
    assert first["ids"].tolist() == [[0, 1], [2, 3]] and second["ids"].tolist() == [[4, 5], [6, 7], [8, 9]]
    assert first["scalar"] == 3.0 and isinstance(second["pair"], Pair) and second["pair"].labels.tolist() == [2, 3, 4]
    assert [t["boxes"].shape[0] for t in second["targets"]] == [2, 3, 4]
    assert second["data"].targets == ["c", "d", "e"] and second["data"].name == "b"
    with pytest.raises(ValueError, match="a batch of 1 examples cannot be split over 2 ranks"):
        shard_batch({"ids": torch.zeros(1, 3)}, 0, 2)
    with pytest.raises(ValueError, match="no tensor or list"):
        shard_batch({"n": 3}, 0, 2)


def test_rank_slices_partition_the_global_batches_and_keep_the_loaders_state(make_loader):
    loader = make_loader(n=24, batch_size=4)
    loader.state_dict = lambda: {"epoch": loader.epoch}
    slices = [RankSlices(loader, r, 2) for r in range(2)]
    slices[0].set_epoch(1)
    whole = list(loader)
    parts = [list(s) for s in slices]
    for i, batch in enumerate(whole):
        torch.testing.assert_close(torch.cat([parts[0][i]["src_ids"], parts[1][i]["src_ids"]]), batch["src_ids"])
    assert len(slices[1]) == len(loader) and slices[1].state_dict() == {"epoch": 1}
    assert not hasattr(RankSlices(object(), 0, 2), "load_state_dict")  # only where the loader has one


def test_parallel_option_is_checked_and_refused_without_a_choice_on_several_ranks():
    with pytest.raises(ValueError, match="parallel must be one of"):
        TrainerConfig(parallel="zero3")
    with pytest.raises(ValueError, match="parallel='fsdp' needs precision"):
        TrainerConfig(parallel="fsdp", precision="fp16")
    with pytest.raises(ValueError, match=r"train.parallel='none'; set train.parallel=ddp or fsdp"):
        prepare_model(tiny_gpt(), "none", False, "fp32", DistContext(rank=0, world_size=2))
    model = prepare_model(tiny_gpt(), "ddp", True, "fp32", DistContext())  # one process: checkpointing only
    assert "_formers_checkpointed_forward" in model.layers[0].__dict__


# ---------------------------------------------------------------- 2 processes (torchrun, gloo)


def _recipe(tmp: Path) -> Path:
    text = tmp / "corpus.txt"
    text.write_text(TEXT, encoding="utf-8")
    recipe = {
        "name": "tiny-lm", "task": "causal_lm",
        "model": {"name": "gpt_mini", "embed_dim": 32, "num_layers": 2, "num_heads": 2, "dropout": 0.0,
                  "attn_dropout": 0.0},
        "data": {"text": str(text), "tokenizer": "char", "block_size": 16, "batch_size": 8, "steps_per_epoch": 4,
                 "eval_batches": 1, "eval_batch_size": 8},
        "task_options": {"sample_tokens": 0},
        "optim": {"name": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_steps": 2},
        "train": {"max_steps": STEPS, "log_every": 1, "save_every": 3, "eval_every": 3, "keep_last": 5,
                  "device": "cpu", "progress_bar": False, "tensorboard": False, "best_metric": "val_loss",
                  "best_mode": "min"},
    }
    path = tmp / "tiny-lm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _torchrun(recipe: Path, run_dir: Path, *args: str, extra_path: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(extra_path), str(SRC)] if extra_path else [str(SRC)])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("FORMERS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "formers.cli.main", "train", str(recipe), "--run-dir", str(run_dir),
         "--nproc-per-node", "2", *args], check=False, env=env, capture_output=True, text=True, timeout=300,
    )


def _failure(done: subprocess.CompletedProcess) -> str:
    """What a failed torchrun said: every rank's error lines (tracebacks, aborts), then the end of its stderr."""
    lines = done.stderr.splitlines()
    errors = [line for line in lines[:-40] if any(w in line for w in ("Error", "Traceback", "terminate", "Fatal"))]
    return "\n".join([*errors[-40:], "...", *lines[-40:]])


def _losses(run_dir: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(run_dir / "metrics.csv")) if r["loss"]]


def _weights(run_dir: Path, step: int = STEPS) -> dict[str, torch.Tensor]:
    return load_safetensors(checkpoints_dir(run_dir) / step_dir_name(step) / "model.safetensors")


def _logits(run_dir: Path, step: int = STEPS) -> torch.Tensor:
    model = formers.from_pretrained(checkpoints_dir(run_dir) / step_dir_name(step)).eval()
    ids = torch.randint(0, model.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids).logits


def _rewind(run_dir: Path, to: Path, step: int) -> Path:
    """A copy of ``run_dir`` as an interruption after ``step`` would have left it."""
    shutil.copytree(run_dir, to, symlinks=True)
    for d in checkpoints_dir(to).glob("step_*"):
        if int(d.name.split("_")[1]) > step:
            shutil.rmtree(d)
    best = checkpoints_dir(to) / "best"  # a link, or a copy where links are unavailable
    shutil.rmtree(best) if best.is_dir() and not best.is_symlink() else best.unlink(missing_ok=True)
    best.symlink_to(step_dir_name(step))  # the recipe evaluates at step 3, its best so far
    (checkpoints_dir(to) / LATEST_NAME).write_text(step_dir_name(step) + "\n")
    return to


def _parallel(parallel: str) -> list[str]:
    """The FSDP runs also checkpoint their activations: the two wrap the same blocks."""
    checkpointing = ["--set", "train.activation_checkpointing=true"] if parallel == "fsdp" else []
    return ["--set", f"train.parallel={parallel}", *checkpointing]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One process, DDP and FSDP (with activation checkpointing) on 2 ranks: the same recipe and global batch (8 windows
    of 16 characters)."""
    tmp = tmp_path_factory.mktemp("dist")
    recipe = _recipe(tmp)
    torch.set_num_threads(1)
    assert main(["train", str(recipe), "--run-dir", str(tmp / "one")]) == 0
    out = {"recipe": recipe, "one": tmp / "one"}
    for parallel in ("ddp", "fsdp"):
        done = _torchrun(recipe, tmp / parallel, *_parallel(parallel))
        assert done.returncode == 0, _failure(done)
        out[parallel] = tmp / parallel
    return out


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_give_the_losses_and_weights_of_one_process(runs, parallel):
    one, two = _losses(runs["one"]), _losses(runs[parallel])
    assert len(one) == len(two) == STEPS
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=0)
    assert set(_weights(runs[parallel])) == set(_weights(runs["one"]))  # no "module." prefixes: the plain names
    torch.testing.assert_close(_logits(runs[parallel]), _logits(runs["one"]), rtol=0, atol=1e-4)
    positions = load_state(checkpoints_dir(runs[parallel]) / step_dir_name(3), "ranks")
    assert positions == [[0, 3], [0, 3]]  # [epoch, batch] of each rank
    model = formers.from_pretrained(runs[parallel])  # the plain model, ready to use on one process
    assert type(model).__name__ == "GPT" and model.config.embed_dim == 32


@pytest.mark.parametrize("parallel", [pytest.param("ddp", marks=pytest.mark.slow), "fsdp"])
def test_a_checkpoint_of_two_ranks_resumes_on_two_and_on_one(runs, parallel, tmp_path):
    resumed = _rewind(runs[parallel], tmp_path / "two", 3)
    done = _torchrun(runs["recipe"], resumed, "--resume", *_parallel(parallel))
    assert done.returncode == 0, _failure(done)
    uninterrupted = _weights(runs[parallel])
    for name, tensor in _weights(resumed).items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=0, atol=1e-6, msg=name)
    assert _losses(resumed) == _losses(runs[parallel])
    if parallel == "fsdp":  # and on one process (its optimizer state was gathered from the shards)
        single = _rewind(runs[parallel], tmp_path / "one", 3)
        torch.set_num_threads(1)
        assert main(["train", str(runs["recipe"]), "--run-dir", str(single), "--resume"]) == 0
        torch.testing.assert_close(_logits(single), _logits(runs[parallel]), rtol=0, atol=1e-4)
        torch.testing.assert_close(torch.tensor(_losses(single)), torch.tensor(_losses(runs[parallel])), rtol=1e-5,
                                   atol=0)


def test_a_failing_rank_ends_the_job_with_one_clear_line(runs, tmp_path):
    done = _torchrun(runs["recipe"], tmp_path / "bad", "--set", "data.batch_size=1")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("formers train: error: rank ") and "of the distributed run failed (exit code 2)" in last
    assert "a batch of 1 examples cannot be split over 2 ranks" in done.stderr


SITECUSTOMIZE = """
import os, signal
if os.environ.get("RANK") == os.environ.get("FORMERS_TEST_KILL_RANK"):
    from formers.training.trainer import Trainer
    kill_after = int(os.environ["FORMERS_TEST_KILL_AFTER"])
    boundary = Trainer._mark_boundary
    def mark(self):
        if self.state.step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        boundary(self)
    Trainer._mark_boundary = mark
"""


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_continues_from_the_last_checkpoint(runs, tmp_path):
    """kill -9 of rank 1 after step 5 (the last checkpoint is step 3's): one line names it, and `--resume` on 2
    ranks ends with the weights and losses of the uninterrupted DDP run."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    run_dir = tmp_path / "killed"
    env = {"FORMERS_TEST_KILL_RANK": "1", "FORMERS_TEST_KILL_AFTER": "5"}
    done = _torchrun(runs["recipe"], run_dir, "--set", "train.parallel=ddp", extra_path=hook, env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "formers train: error: rank 1 of the distributed run failed (exit code -9)" in lines[-2], lines[-3:]
    assert lines[-1].startswith("resume with: formers train ") and lines[-1].endswith("--resume --nproc-per-node 2")
    assert (checkpoints_dir(run_dir) / LATEST_NAME).read_text().strip() == step_dir_name(3)
    done = _torchrun(runs["recipe"], run_dir, "--resume", "--set", "train.parallel=ddp")
    assert done.returncode == 0, _failure(done)
    uninterrupted = _weights(runs["ddp"])
    for name, tensor in _weights(run_dir).items():
        torch.testing.assert_close(tensor, uninterrupted[name], rtol=0, atol=1e-6, msg=name)
    assert _losses(run_dir) == _losses(runs["ddp"])


@pytest.mark.slow
def test_gradient_accumulation_under_ddp_gives_the_losses_of_one_process(runs, tmp_path):
    """2 micro-batches per step: DDP all-reduces only the last one's (no_sync before), and still matches."""
    accumulate = ("--set", "train.grad_accum_steps=2")
    torch.set_num_threads(1)
    assert main(["train", str(runs["recipe"]), "--run-dir", str(tmp_path / "one"), *accumulate]) == 0
    done = _torchrun(runs["recipe"], tmp_path / "ddp", "--set", "train.parallel=ddp", *accumulate)
    assert done.returncode == 0, _failure(done)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "ddp")
    assert len(two) == STEPS and one != _losses(runs["one"])  # other batches than without accumulation
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=0)
    torch.testing.assert_close(_logits(tmp_path / "ddp"), _logits(tmp_path / "one"), rtol=0, atol=1e-4)


NONFINITE_SCRIPT = """
import json, math, os, sys
import torch
from formers.training.task import StepOutput
from formers.training.device_step import DeviceSkipStep
from formers.training.distributed import shutdown_distributed
from formers.training.trainer import Trainer, TrainerConfig

DeviceSkipStep.on_cpu = len(sys.argv) > 3 and sys.argv[3] == "device"  # the device-decided skip on CPU ranks too
log_every = int(sys.argv[4]) if len(sys.argv) > 4 else 1

class Task:
    calls = 0
    def training_step(self, model, batch):
        self.calls += 1
        loss = model(batch["x"]).pow(2).mean()
        if os.environ["RANK"] == "1" and self.calls == 2:  # rank 1 alone sees a non-finite loss at step 2
            loss = loss * math.inf
        return StepOutput(loss=loss, num_tokens=batch["x"].shape[0])
    def evaluate(self, model, loader):
        return {}

torch.manual_seed(0)
model = torch.nn.Linear(4, 3)
data = [{"x": torch.randn(8, 4, generator=torch.Generator().manual_seed(i))} for i in range(4)]
config = TrainerConfig(max_steps=4, parallel=sys.argv[2], device="cpu", progress_bar=False, tensorboard=False,
                       log_every=log_every, max_grad_norm=0.0)
state = Trainer(model, Task(), data, config, sys.argv[1]).fit()
weights = model.weight.full_tensor() if hasattr(model.weight, "full_tensor") else model.weight
out = {"skipped": state.total_nonfinite, "weight": weights.detach().tolist()}
with open(os.path.join(sys.argv[1], "rank%s.json" % os.environ["RANK"]), "w") as f:
    json.dump(out, f)
shutdown_distributed(wait=True)  # as `formers train` does: the ranks leave together (see its doc)
"""


def _nonfinite_run(tmp_path: Path, parallel: str, *args: str) -> None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "nonfinite.py"
    script.write_text(NONFINITE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         str(tmp_path / "run"), parallel, *args], check=False, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, _failure(done)


@pytest.mark.slow
def test_under_ddp_the_device_decided_skip_gives_the_weights_of_the_host_decided_one(tmp_path):
    """The loss averaged over the ranks decides on the device; the host reads (and the ranks agree) every 3 steps."""
    _nonfinite_run(tmp_path / "host", "ddp")
    _nonfinite_run(tmp_path / "device", "ddp", "device", "3")
    host, device = ([json.loads((tmp / "run" / f"rank{r}.json").read_text()) for r in range(2)]
                    for tmp in (tmp_path / "host", tmp_path / "device"))
    assert [r["skipped"] for r in device] == [1, 1]
    assert device[0]["weight"] == device[1]["weight"] == host[0]["weight"]
    rows = list(csv.DictReader((tmp_path / "device" / "run" / "metrics.csv").read_text().splitlines()))
    assert [(r["step"], r["nonfinite_skips"]) for r in rows] == [("3", "1"), ("4", "1")]


@pytest.mark.parametrize("parallel", [pytest.param("ddp", marks=pytest.mark.slow), "fsdp"])
def test_a_non_finite_loss_on_one_rank_is_skipped_by_every_rank(tmp_path, parallel):
    _nonfinite_run(tmp_path, parallel)
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1
    assert ranks[0]["weight"] == ranks[1]["weight"]  # the ranks still hold the same model
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["nonfinite_skips"] for r in rows] == ["0", "1", "1", "1"]  # one metrics file, by rank 0


@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_on_two_fsdp_ranks(runs, tmp_path):
    resumed = _rewind(runs["one"], tmp_path / "run", 3)
    done = _torchrun(runs["recipe"], resumed, "--resume", *_parallel("fsdp"))
    assert done.returncode == 0, _failure(done)
    torch.testing.assert_close(torch.tensor(_losses(resumed)), torch.tensor(_losses(runs["one"])), rtol=1e-5, atol=0)
    torch.testing.assert_close(_logits(resumed), _logits(runs["one"]), rtol=0, atol=1e-4)
