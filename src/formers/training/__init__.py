"""Training engine: Trainer, tasks protocol, optimizers, LR schedules, checkpoints (applied from outside models)."""

from formers.training.checkpoint import (
    TrainerState,
    average_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    write_averaged_model,
)
from formers.training.optim import build_optimizer, param_groups
from formers.training.schedules import build_scheduler
from formers.training.task import EpochLoader, StepOutput, Task
from formers.training.trainer import NonFiniteLossError, Trainer, TrainerConfig

__all__ = [
    "EpochLoader",
    "NonFiniteLossError",
    "StepOutput",
    "Task",
    "Trainer",
    "TrainerConfig",
    "TrainerState",
    "average_checkpoints",
    "build_optimizer",
    "build_scheduler",
    "latest_checkpoint",
    "load_checkpoint",
    "param_groups",
    "save_checkpoint",
    "write_averaged_model",
]
