"""Language-model recipes: the ``data`` and ``task_options`` sections, the run's setup and its final report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from formers.config import from_dict, to_dict
from formers.data.corpora import tinyshakespeare_path
from formers.data.lm import (
    META_FILE,
    TRAIN_FILE,
    VAL_FILE,
    LMWindowLoader,
    TokenFile,
    lm_eval_batches,
    prepare_corpus,
)
from formers.data.tokenizers.joint_bpe import TOKENIZER_FILE
from formers.data.tokenizers.load import load_tokenizer
from formers.hub import from_pretrained
from formers.recipes.recipe import (
    DATA_SOURCES,
    Recipe,
    RunSetup,
    model_from_section,
    model_section,
)
from formers.tasks.causal_lm import CausalLMTask
from formers.training.best import best_checkpoint


@dataclass
class LMData:
    """The ``data`` section of a language-modelling recipe.

    Give one of ``corpus`` (``"tinyshakespeare"``), ``text`` (a UTF-8 file) or ``prepared`` (a folder made by
    ``formers prepare``). Training draws ``batch_size`` random windows of ``block_size`` tokens per step.
    """
    corpus: str | None = None
    text: str | None = None
    prepared: str | None = None
    data_dir: str | None = None
    tokenizer: str = "char"  # "char", "gpt2", or a tokenizer file
    val_fraction: float = 0.1
    block_size: int = 256
    batch_size: int = 64
    steps_per_epoch: int = 1000
    eval_batches: int | None = None  # cap on evaluation batches (None: every non-overlapping val window)
    eval_batch_size: int = 64


@dataclass
class LMOptions:
    """The ``task_options`` section: what the final report generates."""
    sample_prompt: str = "\n"
    sample_tokens: int = 300
    sample_temperature: float = 0.8
    sample_top_k: int | None = 200


RESUMABLE = ("task_options.sample_prompt", "task_options.sample_tokens", "task_options.sample_temperature",
             "task_options.sample_top_k")
"""Keys of this task's sections that may change when a run resumes (they only shape the final report)."""


def _check_source(data: LMData) -> None:
    given = [k for k in DATA_SOURCES["causal_lm"] if getattr(data, k)]
    if len(given) != 1:
        raise ValueError(f"data needs exactly one of corpus, text or prepared; got {given or 'none'} "
                         "(--set data.text=F on the command line replaces the recipe's corpus)")
    if data.corpus is not None and data.corpus != "tinyshakespeare":
        raise ValueError(f"data.corpus must be 'tinyshakespeare' (or use data.text), got {data.corpus!r}")


def sections(recipe: Recipe) -> dict[str, dict]:
    """The recipe's ``data``, ``task_options`` and ``model`` sections checked (nothing read or built) and with their
    defaults filled in."""
    data = from_dict(LMData, recipe.data, prefix="data.")
    _check_source(data)
    options = from_dict(LMOptions, recipe.task_options, prefix="task_options.")
    return {"data": to_dict(data), "task_options": to_dict(options), "model": model_section(recipe.model)}


def _prepared_dir(data: LMData, run_dir: Path) -> Path:
    _check_source(data)
    if data.prepared:
        folder = Path(data.prepared)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(f"data.prepared={str(folder)!r} holds no {META_FILE}; run `formers prepare` first")
        return folder
    text = tinyshakespeare_path(data.data_dir) if data.corpus else Path(data.text)
    folder = run_dir / "data"
    if not (folder / META_FILE).is_file():
        meta = prepare_corpus(text, folder, tokenizer=data.tokenizer, val_fraction=data.val_fraction)
        print(f"data: {text} -> {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens "
              f"({meta['tokenizer']} tokenizer, vocabulary {meta['vocab_size']})")
    return folder


def setup(recipe: Recipe, run_dir: Path, resume: bool) -> RunSetup:
    """Builds tokenizer, model, loaders and the final report for a causal-LM recipe (see :mod:`formers.recipes.run`)."""
    data = from_dict(LMData, recipe.data, prefix="data.")
    options = from_dict(LMOptions, recipe.task_options, prefix="task_options.")
    folder = _prepared_dir(data, run_dir)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE)
    # a character vocabulary has no end-of-text token; GPT-2's BPE has <|endoftext|>
    derived = {"vocab_size": meta["vocab_size"], "max_seq_len": data.block_size, "eos_id": meta.get("eot_id")}
    model = model_from_section(recipe.model, **derived)
    train = TokenFile(folder / TRAIN_FILE, meta["dtype"])
    val = TokenFile(folder / VAL_FILE, meta["dtype"])
    loader = LMWindowLoader(train, data.block_size, data.batch_size, recipe.train.seed, data.steps_per_epoch)
    eval_set = lm_eval_batches(val, data.block_size, data.eval_batch_size, data.eval_batches)
    print(f"data: {len(train):,} train / {len(val):,} val tokens, block {data.block_size}, batch {data.batch_size}; "
          f"model {recipe.model.get('name')} with {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    task = CausalLMTask()

    def finalize(trainer) -> dict:
        return final_report(trainer, tokenizer, eval_set, options, run_dir)

    return RunSetup(model, task, loader, eval_set, {"tokenizer.json": folder / TOKENIZER_FILE}, finalize)


def final_report(trainer, tokenizer, eval_set, options: LMOptions, run_dir: Path) -> dict:
    """Validation loss of the final and best weights, and a sample from the best."""
    candidates = {"final": trainer.model}
    best = best_checkpoint(run_dir)
    if best is not None:
        candidates["best"] = from_pretrained(best, device=trainer.device)
    task, results = CausalLMTask(), {}
    for name, model in candidates.items():
        start = time.perf_counter()
        loss = task.evaluate(model.eval(), eval_set)["val_loss"]
        results[f"val_loss_{name}"] = round(loss, 4)
        print(f"final: {name:<6} val loss {loss:.4f} ({eval_set.num_windows} windows, {time.perf_counter() - start:.0f}s)")
    model = candidates.get("best", trainer.model)
    prompt_ids = tokenizer.encode(options.sample_prompt)
    room = model.config.max_seq_len - len(prompt_ids)  # the sample stays within the context the model was trained on
    if hasattr(model, "generate") and options.sample_tokens > 0 and room > 0:
        prompt = torch.tensor([prompt_ids], device=trainer.device)
        out = model.generate(prompt, max_new_tokens=min(options.sample_tokens, room), do_sample=True,
                             temperature=options.sample_temperature, top_k=options.sample_top_k, seed=0)
        ids = out[0] if isinstance(out, list) else out[0].tolist()
        sample = tokenizer.decode(list(ids))
        (run_dir / "sample.txt").write_text(options.sample_prompt + sample, encoding="utf-8")
        print(f"sample:\n{options.sample_prompt}{sample}")
    return results
