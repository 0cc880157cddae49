"""Translation task: teacher-forced label-smoothed cross-entropy for training, BLEU for evaluation.

Batches come from ``formers.data.parallel.collate_translation``: ``src_ids``, ``src_padding_mask``, ``tgt_in``
(= [bos] + target), ``tgt_out`` (= target + [eos]), ``tgt_padding_mask``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import sacrebleu
import torch
import torch.nn.functional as F
from torch import Tensor

from formers.data.tokenizers import Tokenizer
from formers.inference.translate import Translator
from formers.models.transformer import Transformer
from formers.layers import value_checks
from formers.training.task import StepOutput
from formers.training.trainer import move_to_device


def label_smoothed_nll(logits: Tensor, target: Tensor, mask: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Mean label-smoothed cross-entropy and mean NLL over real target tokens.

    Args:
        logits: (B, T, V).
        target: (B, T) ids.
        mask: (B, T) bool, True = real token.
        smoothing: epsilon of label smoothing (Szegedy et al. 2016; 0.1 in the paper).

    Returns:
        (loss, nll), each a scalar averaged over real tokens.
    """
    logits = logits[mask].float()  # (N, V) real positions only
    target = target[mask]  # (N,)
    loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
    nll = F.cross_entropy(logits, target) if smoothing > 0 else loss
    return loss, nll.detach()


@dataclass
class TranslationEvalSet:
    """Held-out data: collated batches for loss/perplexity plus raw sources and references for BLEU."""

    batches: list[dict[str, Tensor]]
    sources: list[str]
    references: list[str]


class TranslationTask:
    """Trains an encoder-decoder model on parallel text and evaluates it with sacreBLEU.

    Args:
        tokenizer: the joint subword tokenizer (detokenizes hypotheses for BLEU).
        label_smoothing: epsilon (0.1 in the paper).
        beam_size: decoding beam for evaluation (1 = greedy).
        alpha: length penalty for beam search.
        max_bleu_sentences: evaluate BLEU on at most this many sentences (None = all).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        label_smoothing: float = 0.1,
        beam_size: int = 1,
        alpha: float = 0.6,
        max_bleu_sentences: int | None = None,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.tokenizer = tokenizer
        self.label_smoothing = label_smoothing
        self.beam_size = beam_size
        self.alpha = alpha
        self.max_bleu_sentences = max_bleu_sentences

    def training_step(self, model: Transformer, batch: dict[str, Tensor]) -> StepOutput:
        """Teacher-forced loss on one batch from ``collate_translation`` (valid by construction: no value checks)."""
        with value_checks(False):
            out = model(batch["src_ids"], batch["tgt_in"], batch["src_padding_mask"], batch["tgt_padding_mask"])
        mask = batch["tgt_padding_mask"]
        loss, nll = label_smoothed_nll(out.logits, batch["tgt_out"], mask, self.label_smoothing)
        return StepOutput(loss=loss, metrics={"nll": nll}, num_tokens=batch["num_tgt_tokens"])

    @torch.no_grad()
    def evaluate(self, model: Transformer, eval_set: TranslationEvalSet) -> dict[str, float]:
        """Token-level NLL / perplexity on the batches and corpus sacreBLEU of decoded sources."""
        device = next(model.parameters()).device
        total_nll, total_tokens = 0.0, 0
        for batch in eval_set.batches:
            batch = move_to_device(batch, device)
            out = model(batch["src_ids"], batch["tgt_in"], batch["src_padding_mask"], batch["tgt_padding_mask"])
            mask = batch["tgt_padding_mask"]
            _, nll = label_smoothed_nll(out.logits, batch["tgt_out"], mask, 0.0)
            n = int(mask.sum())
            total_nll += float(nll) * n
            total_tokens += n
        metrics: dict[str, float] = {}
        if total_tokens:
            metrics["val_nll"] = total_nll / total_tokens
            metrics["val_ppl"] = math.exp(min(metrics["val_nll"], 50.0))
        n = len(eval_set.sources) if self.max_bleu_sentences is None else self.max_bleu_sentences
        if n > 0 and eval_set.sources:
            translator = Translator(model, self.tokenizer, beam_size=self.beam_size, alpha=self.alpha)
            hyps = translator.translate(eval_set.sources[:n])
            metrics["bleu"] = corpus_bleu(hyps, eval_set.references[:n])
        return metrics


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (13a tokenization, detokenized inputs) of hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")
    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


# ----------------------------------------------------------------------------- recipe setup


@dataclass
class TranslationData:
    """The ``data`` section of a translation recipe.

    ``corpus`` is ``"bible-en-es"`` (embedded, public domain), ``"multi30k"`` (``data_dir``,
    ``$FORMERS_DATA_DIR/multi30k``, ``../shared/data/multi30k`` or download) or ``"files"`` (your own
    ``train_src``/``train_tgt`` or ``train_tsv`` and the matching ``valid_*``).
    """

    corpus: str = "bible-en-es"
    src_lang: str = "en"
    tgt_lang: str = "es"
    data_dir: str | None = None
    train_src: str | None = None
    train_tgt: str | None = None
    train_tsv: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    valid_tsv: str | None = None
    valid_split: str = "val"
    vocab_size: int = 8000
    min_frequency: int = 2
    max_len: int = 128  # longer training pairs are rejected (and counted), never truncated
    max_tokens: int = 4096
    max_train_pairs: int | None = None
    max_valid_pairs: int | None = None


@dataclass
class TranslationOptions:
    """The ``task_options`` section: loss and decoding settings."""

    label_smoothing: float = 0.1
    eval_beam_size: int = 1  # decoding during training-time evaluation (1 = greedy, fast)
    final_beam_size: int = 4  # decoding for the final report
    alpha: float = 0.6
    max_bleu_sentences: int | None = None  # cap on sentences decoded during training-time evaluation
    average_last: int = 0  # average the last N step checkpoints at the end (0 = off)


def load_corpus_split(
    corpus: str, split: str, src_lang: str | None, tgt_lang: str | None, data_dir: str | None = None
) -> tuple[list[str], list[str]]:
    """Sources and references of a built-in corpus split."""
    from formers.data import corpora

    if corpus == "multi30k":
        if not src_lang or not tgt_lang:
            raise ValueError(f"multi30k needs src_lang and tgt_lang, got {src_lang!r} and {tgt_lang!r}")
        pairs = corpora.load_multi30k(split, src_lang, tgt_lang, data_dir=data_dir)
    elif corpus == "bible-en-es":
        pairs = corpora.load_bible_en_es(split=split)
        if (src_lang, tgt_lang) == ("es", "en"):
            return list(pairs.tgt), list(pairs.src)
        if (src_lang, tgt_lang) not in (("en", "es"), (None, None)):
            raise ValueError(f"bible-en-es pairs English and Spanish, got src_lang={src_lang!r} tgt_lang={tgt_lang!r}")
    else:
        raise ValueError(f"corpus must be 'multi30k' or 'bible-en-es', got {corpus!r}")
    return list(pairs.src), list(pairs.tgt)


def _read_split(data: TranslationData, split: str) -> tuple[list[str], list[str]]:
    from formers.data.parallel import read_parallel, read_tsv

    if data.corpus != "files":
        return load_corpus_split(data.corpus, split, data.src_lang, data.tgt_lang, data.data_dir)
    src, tgt, tsv = (getattr(data, f"{split}_{k}") for k in ("src", "tgt", "tsv"))
    if tsv:
        pairs = read_tsv(tsv)
    elif src and tgt:
        pairs = read_parallel(src, tgt)
    else:
        raise ValueError(f"corpus 'files' needs data.{split}_src and data.{split}_tgt, or data.{split}_tsv")
    return list(pairs.src), list(pairs.tgt)


def setup(recipe, run_dir: Path, resume: bool):
    """Builds tokenizer, model, loaders and the final report for a translation recipe (see ``training.run``)."""
    from formers.config import from_dict
    from formers.data.parallel import ParallelDataset, TranslationLoader
    from formers.data.tokenizers import SubwordTokenizer
    from formers.recipes import model_from_section
    from formers.training.run import RunSetup

    data = from_dict(TranslationData, recipe.data, prefix="data.")
    options = from_dict(TranslationOptions, recipe.task_options, prefix="task_options.")
    train_src, train_tgt = _read_split(data, "train")
    valid_src, valid_tgt = _read_split(data, "valid" if data.corpus == "files" else data.valid_split)
    if data.max_train_pairs is not None:
        train_src, train_tgt = train_src[: data.max_train_pairs], train_tgt[: data.max_train_pairs]
    if data.max_valid_pairs is not None:
        valid_src, valid_tgt = valid_src[: data.max_valid_pairs], valid_tgt[: data.max_valid_pairs]

    tok_path = run_dir / "tokenizer.json"
    if resume and tok_path.is_file():
        tokenizer = SubwordTokenizer.load(tok_path)
    else:
        tokenizer = SubwordTokenizer.train(train_src + train_tgt, data.vocab_size, data.min_frequency)
        tokenizer.save(tok_path)
    model = model_from_section(
        recipe.model,
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        tokenizer={"src_lang": data.src_lang, "tgt_lang": data.tgt_lang, "corpus": data.corpus},
    )
    max_len = min(data.max_len, model.config.max_seq_len)
    train_set = ParallelDataset.from_text(train_src, train_tgt, tokenizer, max_len=max_len)
    if train_set.num_rejected:
        print(f"data: rejected {train_set.num_rejected} of {len(train_src)} training pairs longer than {max_len} tokens")
    valid_set = ParallelDataset.from_text(valid_src, valid_tgt, tokenizer, max_len=None)
    ids = dict(pad_id=tokenizer.pad_id, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    train_loader = TranslationLoader(train_set, data.max_tokens, shuffle=True, seed=recipe.train.seed, **ids)
    eval_batches = list(TranslationLoader(valid_set, data.max_tokens, shuffle=False, **ids))
    eval_set = TranslationEvalSet(eval_batches, valid_src, valid_tgt)
    print(
        f"data: {len(train_set)} training pairs, {len(valid_set)} validation pairs, joint BPE vocabulary "
        f"{tokenizer.vocab_size}; model {recipe.model.get('name')} with "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters"
    )
    task = TranslationTask(
        tokenizer, options.label_smoothing, options.eval_beam_size, options.alpha, options.max_bleu_sentences
    )

    def finalize(trainer) -> dict:
        return final_report(trainer, tokenizer, eval_set, options, run_dir)

    return RunSetup(model, task, train_loader, eval_set, {"tokenizer.json": tok_path}, finalize)


def final_report(trainer, tokenizer, eval_set: TranslationEvalSet, options: TranslationOptions, run_dir: Path) -> dict:
    """Beam-search BLEU of the final, best and (optionally) averaged weights on the whole validation set."""
    import time

    from formers.cli.checkpoints import average_run_checkpoints
    from formers.hub import from_pretrained

    candidates = {"final": trainer.model}
    if (run_dir / "checkpoints" / "best").is_dir():
        candidates["best"] = from_pretrained(run_dir / "checkpoints" / "best", device=trainer.device)
    if options.average_last > 0:
        paths = average_run_checkpoints(run_dir, options.average_last, run_dir / "averaged")
        candidates[f"averaged_last_{len(paths)}"] = from_pretrained(run_dir / "averaged", device=trainer.device)
    results = {}
    for name, model in candidates.items():
        start = time.perf_counter()
        hyps = Translator(model.eval(), tokenizer, beam_size=options.final_beam_size, alpha=options.alpha).translate(
            eval_set.sources
        )
        bleu = corpus_bleu(hyps, eval_set.references)
        results[f"bleu_{name}"] = round(bleu, 2)
        print(f"final: {name:<20} sacreBLEU {bleu:6.2f} (beam {options.final_beam_size}, "
              f"{len(hyps)} sentences, {time.perf_counter() - start:.0f}s)")
        (run_dir / f"hypotheses_{name}.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    return results
