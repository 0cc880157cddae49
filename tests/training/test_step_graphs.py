"""Whole-step CUDA graphs (``train.cuda_graphs``) and the static translation batches that make them pay.

On a CPU: filler rows weigh nothing (loss, gradients, token counts), static batches take the budget's shape, and the
Trainer's choice of graphs. On CUDA (``-m gpu``): graphed training equals eager training, dropout included."""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import formers
from formers.data.parallel import (
    ParallelDataset,
    TranslationLoader,
    collate_translation,
)
from formers.tasks.translation import TranslationTask
from formers.training import Trainer, TrainerConfig
from formers.training.optim import build_optimizer
from formers.training.step_graphs import use_step_graphs

VOCAB = 40


def _model(dropout: float = 0.0, seed: int = 0, family: str = "transformer") -> torch.nn.Module:
    torch.manual_seed(seed)
    if family == "lstm":  # 2 + 2 layers: dropout between them, as the recipe's model has (no cuDNN dropout state)
        return formers.create_model("lstm_seq2seq_tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, dropout=dropout,
                                    num_encoder_layers=2, num_decoder_layers=2)
    model = formers.create_model(
        "transformer_tiny", src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, embed_dim=32, ffn_dim=64, num_heads=2,
        num_encoder_layers=2, num_decoder_layers=2, dropout=dropout, max_seq_len=64,
    )
    if family == "syncing":  # reads a value on the host in every forward pass, which a capture cannot hold
        model.encoder.register_forward_pre_hook(lambda module, args: None if args[0].sum().item() else None)
    return model


def _pairs(n: int, seed: int = 0, longest: int = 30) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(3, VOCAB) for _ in range(rng.randint(1, longest))],
             [rng.randrange(3, VOCAB) for _ in range(rng.randint(1, longest))]) for _ in range(n)]


def _loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    model.zero_grad(set_to_none=True)
    out = TranslationTask(tokenizer=None, label_smoothing=0.1).training_step(model, batch)
    out.loss.backward()
    return out.loss.detach(), [p.grad.clone() for p in model.parameters()], out.num_tokens


def test_filler_rows_change_neither_the_loss_nor_the_gradients_nor_the_token_count() -> None:
    model = _model()
    pairs = _pairs(5)
    plain = collate_translation(pairs, pad_multiple=8)
    padded = collate_translation(pairs, pad_multiple=8, rows=12)
    assert padded["src_ids"].shape[0] == 12 and padded["num_tgt_tokens"] == plain["num_tgt_tokens"]
    assert padded["src_padding_mask"][5:].sum(1).tolist() == [1] * 7  # one real token per filler row
    loss, grads, tokens = _loss_and_grads(model, plain)
    loss2, grads2, tokens2 = _loss_and_grads(model, padded)
    assert int(tokens) == int(tokens2) == plain["num_tgt_tokens"]
    torch.testing.assert_close(loss2, loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_rows_below_the_number_of_pairs_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rows must be at least the number of pairs \(5\), got 3"):
        collate_translation(_pairs(5), rows=3)


def test_static_batches_take_their_budget_of_rows_and_keep_every_pair_once() -> None:
    pairs = _pairs(300, seed=1, longest=60)
    dataset = ParallelDataset([s for s, _ in pairs], [t for _, t in pairs])
    loader = TranslationLoader(dataset, max_tokens=1024, pad_multiple=16, static_batches=True)
    assert loader.static_shapes
    seen, shapes = [], set()
    for batch in loader:
        rows, src_len = batch["src_ids"].shape
        tgt_len = batch["tgt_in"].shape[1]
        assert src_len % 16 == 0 and tgt_len % 16 == 0
        assert rows == 1024 // (src_len + tgt_len), (rows, src_len, tgt_len)
        real = batch["tgt_out"][:, 0] != -100
        seen += [tuple(r[m].tolist()) for r, m in zip(batch["src_ids"][real], batch["src_padding_mask"][real])]
        shapes.add((rows, src_len, tgt_len))
    assert sorted(seen) == sorted(tuple(s) for s, _ in pairs)
    assert len(shapes) <= 16  # lengths up to 64 in steps of 16: at most 4 x 4 shapes


def test_graphs_are_chosen_for_static_loaders_on_cuda_only() -> None:
    static = TranslationLoader(ParallelDataset([[3]], [[4]]), max_tokens=64, static_batches=True)
    auto, task, cuda = TrainerConfig(precision="bf16"), TranslationTask(tokenizer=None), torch.device("cuda")
    assert use_step_graphs(auto, cuda, static, distributed=False, task=task)
    assert not use_step_graphs(auto, torch.device("cpu"), static, distributed=False, task=task)
    assert not use_step_graphs(auto, cuda, [static], distributed=False, task=task)  # no static_shapes
    assert not use_step_graphs(auto, cuda, static, distributed=False, task=object())  # not known capturable
    assert not use_step_graphs(auto, cuda, static, distributed=True, task=task)
    assert not use_step_graphs(TrainerConfig(cuda_graphs=False), cuda, static, distributed=False, task=task)
    with pytest.warns(UserWarning, match=r"cuda_graphs=true applies to one CUDA device; the steps on 'cpu' run eagerly"):
        assert not use_step_graphs(TrainerConfig(cuda_graphs=True), torch.device("cpu"), [], distributed=False)
    on = TrainerConfig(cuda_graphs=True)
    with pytest.warns(UserWarning, match=r"TranslationTask's training step takes decisions on the host"):
        task.capturable = False  # what a task with host-side coin tosses says (image classification with MixUp)
        assert not use_step_graphs(on, cuda, static, distributed=False, task=task)
    with pytest.raises(ValueError, match=r"cuda_graphs=True needs steps that are eager or compiled without CUDA "
                                         r"graphs of their own .* got compile=True, compile_mode='reduce-overhead'"):
        TrainerConfig(cuda_graphs=True, compile=True, compile_mode="reduce-overhead")
    with pytest.raises(ValueError, match=r"compile_mode='max-autotune', precision='bf16'"):
        TrainerConfig(cuda_graphs=True, compile=True, compile_mode="max-autotune", precision="bf16")
    with pytest.raises(ValueError, match=r"precision='fp16'"):
        TrainerConfig(cuda_graphs=True, precision="fp16")
    compiled = TrainerConfig(cuda_graphs=True, compile=True)  # compiled kernels, graphed by formers
    assert use_step_graphs(compiled, cuda, static, distributed=False, task=TranslationTask(tokenizer=None))
    assert not use_step_graphs(TrainerConfig(compile=True), cuda, static, distributed=False, task=task)  # not by default


def test_image_classification_is_graphed_by_default_on_cuda_unless_it_mixes() -> None:
    from formers.data.image_transforms import MixUpCutMix, Preprocessing
    from formers.data.images import ImageBatchLoader, ImageSplit
    from formers.tasks.image_classification import ImageClassificationTask

    split = ImageSplit(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10), [str(i) for i in range(10)])
    loader = ImageBatchLoader(split, 3)
    assert {tuple(b["images"].shape) for b in loader} == {(3, 1, 4, 4)}  # the partial batch is dropped: one shape
    prep, auto, cuda = Preprocessing([str(i) for i in range(10)], (4, 4), 1), TrainerConfig(), torch.device("cuda")
    assert use_step_graphs(auto, cuda, loader, distributed=False, task=ImageClassificationTask(prep, hflip=True))
    mixing = ImageClassificationTask(prep, mix=MixUpCutMix(10, mixup_alpha=0.8))
    assert not use_step_graphs(auto, cuda, loader, distributed=False, task=mixing)


def test_detection_is_graphed_by_default_on_cuda_when_its_images_keep_one_size() -> None:
    g = np.random.default_rng(0)
    build = _detection_build(g.integers(0, 256, (20, 28, 28)).astype(np.uint8), g.integers(0, 10, 20), 6)
    model, task, loader, _ = build(None)
    assert use_step_graphs(TrainerConfig(), torch.device("cuda"), loader, distributed=False, task=task)
    batch = next(iter(loader))
    assert batch["images"].shape == (16, 3, 64, 64) and batch["labels"].shape[0] == 16
    loader.static_shapes = False  # multi-scale resizing or crops: a new shape at nearly every step
    assert not use_step_graphs(TrainerConfig(), torch.device("cuda"), loader, distributed=False, task=task)


def test_causal_lm_windows_are_graphed_by_default_on_cuda() -> None:
    from formers.data.lm import LMWindowLoader
    from formers.tasks.causal_lm import CausalLMTask

    loader = LMWindowLoader(torch.arange(200) % 37, block_size=16, batch_size=4, steps_per_epoch=5)
    assert {tuple(b["input_ids"].shape) for b in loader} == {(4, 16)}  # one shape: one graph
    auto, cuda = TrainerConfig(precision="bf16"), torch.device("cuda")
    assert use_step_graphs(auto, cuda, loader, distributed=False, task=CausalLMTask())
    assert not use_step_graphs(auto, torch.device("cpu"), loader, distributed=False, task=CausalLMTask())
    assert not use_step_graphs(TrainerConfig(compile=True), cuda, loader, distributed=False, task=CausalLMTask())


def _mlm_loader(seed: int = 1):
    from formers.data.mlm import MLMCollator, MLMExample, MLMLoader

    rng = random.Random(0)
    rows = [MLMExample([2] + [rng.randrange(5, VOCAB) for _ in range(n)] + [3], [0] * (n + 2))
            for n in (rng.randint(4, 28) for _ in range(200))]
    collator = MLMCollator(VOCAB, pad_id=0, mask_id=4, special_ids=[1, 2, 3], pad_multiple=16, max_len=32)
    return MLMLoader(rows, collator, 16, seed=seed, drop_last=True)


def test_masked_lm_is_graphed_on_cuda_when_it_scores_every_position_of_padded_batches() -> None:
    from formers.tasks.masked_lm import MaskedLMTask

    loader = _mlm_loader()
    assert {tuple(b["input_ids"].shape) for b in loader} <= {(16, 16), (16, 32)}
    auto, cuda = TrainerConfig(precision="bf16"), torch.device("cuda")
    assert use_step_graphs(auto, cuda, loader, distributed=False, task=MaskedLMTask(all_positions=True))
    assert not use_step_graphs(auto, cuda, loader, distributed=False, task=MaskedLMTask())  # a boolean index


def test_text_classification_is_graphed_on_cuda_when_its_lengths_are_bucketed() -> None:
    from formers.data.labelled import ClassificationLoader, EncodedExample
    from formers.tasks.text_classification import (
        SequenceClassificationTask,
        TokenClassificationTask,
    )

    rows = [EncodedExample([2, *range(5, 5 + n), 3], [0] * (n + 2), 1) for n in (3, 9, 20, 5, 14)]
    bucketed = ClassificationLoader(rows, 2, pad_id=0, pad_multiple=16, max_len=32)
    assert {b["input_ids"].shape[1] for b in bucketed} <= {16, 32}
    auto, cuda = TrainerConfig(precision="bf16"), torch.device("cuda")
    for task in (SequenceClassificationTask(2), TokenClassificationTask(["O", "B-X", "I-X"])):
        assert use_step_graphs(auto, cuda, bucketed, distributed=False, task=task)
        exact = ClassificationLoader(rows, 2, pad_id=0)  # every longest length: many shapes
        assert not use_step_graphs(auto, cuda, exact, distributed=False, task=task)


def _train(run_dir: Path, graphs: bool, accum: int = 1, steps: int = 24, family: str = "transformer",
           warns: str | None = None, resume: bool = False) -> tuple[Trainer, list[float]]:
    pairs = _pairs(400, seed=2, longest=40)
    dataset = ParallelDataset([s for s, _ in pairs], [t for _, t in pairs])
    loader = TranslationLoader(dataset, max_tokens=768, pad_multiple=16, static_batches=True, seed=3)
    model = _model(dropout=0.1, family=family)
    config = TrainerConfig(max_steps=steps, log_every=1, progress_bar=False, tensorboard=False, device="cuda",
                           precision="fp32", cuda_graphs=graphs, grad_accum_steps=accum, seed=5, save_every=12)
    trainer = Trainer(model, TranslationTask(tokenizer=None), loader, config, run_dir,
                      optimizer=build_optimizer(model, lr=1e-3, fused=True))
    if warns is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a step that cannot be captured warns: fail here instead
            trainer.fit(resume=resume)
    else:
        with pytest.warns(UserWarning, match=warns):
            trainer.fit(resume=resume)
    with open(run_dir / "metrics.csv", newline="") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh) if r["loss"]]
    return trainer, losses


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("accum, family", [(1, "transformer"), (2, "transformer"), (1, "lstm")])
def test_on_cuda_graphed_training_equals_eager_training_dropout_included(tmp_path: Path, accum: int,
                                                                         family: str) -> None:
    # the LSTM's encoder reverses each source's real tokens in place instead of packing them (lengths on the host)
    eager, eager_losses = _train(tmp_path / "eager", graphs=False, accum=accum, family=family)
    graphed, graphed_losses = _train(tmp_path / "graphed", graphs=True, accum=accum, family=family)
    assert eager._step_graphs is None
    graphs = graphed._step_graphs
    assert graphs is not None and graphs.disabled is None and graphs.replayed > 0, graphs.summary()
    assert len(graphed_losses) == len(eager_losses) == 24
    torch.testing.assert_close(torch.tensor(graphed_losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_graphed_run_resumed_midway_takes_the_uninterrupted_run_s_steps(tmp_path: Path) -> None:
    _, whole = _train(tmp_path / "whole", graphs=True)
    _train(tmp_path / "split", graphs=True, steps=12)
    _, resumed = _train(tmp_path / "split", graphs=True, resume=True)  # a new process would capture anew, as here
    assert len(whole) == len(resumed) == 24
    torch.testing.assert_close(torch.tensor(resumed), torch.tensor(whole), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_step_that_synchronises_is_found_in_its_warm_up_and_trains_as_eager(tmp_path: Path) -> None:
    eager, eager_losses = _train(tmp_path / "eager", graphs=False, family="syncing")
    graphed, graphed_losses = _train(tmp_path / "graphed", graphs=True, family="syncing",
                                     warns=r"cannot be captured as a CUDA graph, training continues eagerly \(the "
                                           r"step synchronises with the host")
    graphs = graphed._step_graphs
    assert graphs is not None and graphs.replayed == 0 and graphs.disabled is not None
    torch.testing.assert_close(torch.tensor(graphed_losses), torch.tensor(eager_losses), rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def _fit_with_and_without_graphs(tmp_path: Path, build, graphed: bool | None = True) -> dict:
    """``build(cuda_graphs)`` -> (model, task, loader, config settings) trained twice, without graphs (False) and
    with ``graphed`` (True: asked for; None: the Trainer's default choice), with warnings as errors (a step that
    cannot be captured warns); {False: (trainer, logged losses), True: the same with graphs}."""
    runs = {}
    for graphs in (False, graphed):
        torch.manual_seed(0)
        torch._dynamo.reset()
        model, task, loader, settings = build(graphs)
        config = TrainerConfig(max_steps=12, log_every=1, progress_bar=False, tensorboard=False, device="cuda",
                               seed=5, **settings)
        trainer = Trainer(model, task, loader, config, tmp_path / str(graphs),
                          optimizer=build_optimizer(model, lr=1e-3, fused=True))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # inductor's advice on float32 matmuls (a compiled fp32 step) is not the warning this test watches for
            warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")
            trainer.fit()
        with open(tmp_path / str(graphs) / "metrics.csv", newline="") as fh:
            runs[graphs is not False] = (trainer, [float(r["loss"]) for r in csv.DictReader(fh) if r["loss"]])
    return runs


def _assert_graphed_equals_plain(runs: dict, replayed: int) -> None:
    graphs = runs[True][0]._step_graphs
    assert runs[False][0]._step_graphs is None
    assert graphs is not None and graphs.disabled is None and graphs.replayed >= replayed, graphs.summary()
    torch.testing.assert_close(torch.tensor(runs[True][1]), torch.tensor(runs[False][1]), rtol=1e-5, atol=1e-6)
    for (key, a), b in zip(runs[False][0].model.state_dict().items(), runs[True][0].model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)


def _image_run(name: str, dropout: float = 0.0, **settings):
    from formers.data.image_transforms import Preprocessing
    from formers.data.images import ImageBatchLoader, ImageSplit
    from formers.tasks.image_classification import ImageClassificationTask

    g = torch.Generator().manual_seed(0)
    split = ImageSplit(torch.randint(0, 256, (256, 1, 28, 28), generator=g, dtype=torch.uint8),
                       torch.randint(0, 10, (256,), generator=g), [str(i) for i in range(10)]).to("cuda")

    def build(graphs):
        model = formers.create_model(name, num_classes=10)
        for m in model.modules():  # dropout on, wherever the model has it
            if isinstance(m, torch.nn.Dropout) and dropout:
                m.p = dropout
        task = ImageClassificationTask(Preprocessing([str(i) for i in range(10)], (28, 28), 1), label_smoothing=0.1,
                                       crop_padding=2, hflip=True)
        return model, task, ImageBatchLoader(split, 64, seed=1), {"cuda_graphs": graphs, **settings}

    return build


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["vit_mini_28", "efficientformer_mini_28", "swin_mini_28", "tnt_mini_28"])
def test_on_cuda_graphed_image_training_equals_eager_crops_flips_and_dropout_included(tmp_path: Path,
                                                                                     name: str) -> None:
    # cuDNN's default convolution gradients add in a nondeterministic order; Adam turns their last-bit
    # differences into visible ones on weights whose gradient is near zero (EfficientFormer's stem)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        runs = _fit_with_and_without_graphs(tmp_path, _image_run(name, dropout=0.1))
    _assert_graphed_equals_plain(runs, replayed=10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_graphed_compiled_image_training_equals_compiled_training(tmp_path: Path) -> None:
    runs = _fit_with_and_without_graphs(tmp_path, _image_run("vit_mini_28", compile=True))
    _assert_graphed_equals_plain(runs, replayed=10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_graphed_causal_lm_training_equals_eager_dropout_included(tmp_path: Path) -> None:
    from formers.data.lm import LMWindowLoader
    from formers.tasks.causal_lm import CausalLMTask

    tokens = torch.randint(0, 64, (5000,), generator=torch.Generator().manual_seed(0))

    def build(graphs):
        model = formers.create_model("gpt_mini", vocab_size=64, max_seq_len=32, dropout=0.1, eos_id=None)
        loader = LMWindowLoader(tokens, block_size=32, batch_size=8, seed=1, steps_per_epoch=100)
        return model, CausalLMTask(), loader, {"precision": "fp32", "cuda_graphs": graphs}

    _assert_graphed_equals_plain(_fit_with_and_without_graphs(tmp_path, build, graphed=None), replayed=10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_graphed_masked_lm_training_equals_eager_dropout_included(tmp_path: Path) -> None:
    from formers.models.bert import BertConfig, BertForPreTraining
    from formers.tasks.masked_lm import MaskedLMTask

    def build(graphs):
        model = BertForPreTraining(BertConfig(vocab_size=VOCAB, embed_dim=32, num_heads=2, num_layers=2, ffn_dim=64,
                                              max_seq_len=32, dropout=0.1, attn_dropout=0.1))
        return model, MaskedLMTask(all_positions=True), _mlm_loader(), {"precision": "fp32", "cuda_graphs": graphs}

    _assert_graphed_equals_plain(_fit_with_and_without_graphs(tmp_path, build, graphed=None), replayed=6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_graphed_sequence_classification_equals_eager_dropout_included(tmp_path: Path) -> None:
    from formers.data.labelled import ClassificationLoader, EncodedExample
    from formers.models.bert import BertConfig, BertForSequenceClassification
    from formers.tasks.text_classification import SequenceClassificationTask

    rng = random.Random(0)
    rows = [EncodedExample([2, *(rng.randrange(5, VOCAB) for _ in range(n)), 3], [0] * (n + 2), n % 2)
            for n in (rng.randint(3, 28) for _ in range(192))]

    def build(graphs):
        model = BertForSequenceClassification(BertConfig(vocab_size=VOCAB, embed_dim=32, num_heads=2, num_layers=2,
                                                         ffn_dim=64, max_seq_len=32, dropout=0.1, attn_dropout=0.1,
                                                         num_labels=2))
        loader = ClassificationLoader(rows, 16, pad_id=0, seed=1, pad_multiple=16, max_len=32)
        return model, SequenceClassificationTask(2), loader, {"precision": "fp32", "cuda_graphs": graphs}

    _assert_graphed_equals_plain(_fit_with_and_without_graphs(tmp_path, build, graphed=None), replayed=6)


def _detection_build(items: np.ndarray, labels: np.ndarray, num_queries: int):
    """``build(cuda_graphs)`` for DETR on 64x64 canvases of 1-2 generated objects (flips only: one image size)."""
    from formers.data.detection import DetectionDataset, DetectionImage
    from formers.data.detection_loader import DetectionLoader, train_transform
    from formers.data.fashion_detect import FashionDetectConfig, make_canvases
    from formers.tasks.detection import DetectionTask

    canvases = make_canvases(items, labels, 96, FashionDetectConfig(canvas_size=64, max_items=2), seed=0)
    images = []
    for i, (canvas, objects) in enumerate(canvases):
        boxes = torch.tensor([box for box, _ in objects], dtype=torch.float32).view(-1, 4)
        classes = torch.tensor([lab for _, lab in objects], dtype=torch.long)
        area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
        images.append(DetectionImage(i + 1, 64, 64, boxes, classes, torch.zeros(len(objects), dtype=torch.bool), area,
                                     pixels=torch.from_numpy(canvas).permute(2, 0, 1).contiguous()))
    dataset = DetectionDataset(images, [str(k) for k in range(10)])

    def build(graphs):
        from formers.data.image_transforms import channel_tensors

        channel_tensors.cache_clear()  # made again inside the graphed run's warm-up, as in a fresh recipe run
        model = formers.create_model("detr_tiny", num_queries=num_queries, dropout=0.1)
        loader = DetectionLoader(dataset, 16, train_transform(None, 64, None, hflip=True), seed=1, static_shapes=True)
        task = DetectionTask(10, mean=[0.1] * 3, std=[0.3] * 3)
        return model, task, loader, {"precision": "fp32", "cuda_graphs": graphs}

    return build


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_graphed_detr_training_matches_on_the_device_and_equals_eager(tmp_path: Path) -> None:
    # Few boxes against the queries: the matching runs on the device, so the whole step (matching, set loss) replays
    g = np.random.default_rng(0)
    items, labels = g.integers(0, 256, (50, 28, 28)).astype(np.uint8), g.integers(0, 10, 50)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        runs = _fit_with_and_without_graphs(tmp_path, _detection_build(items, labels, num_queries=6), graphed=None)
    _assert_graphed_equals_plain(runs, replayed=8)
