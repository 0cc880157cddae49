"""``formers train --nproc-per-node N``: starts ``torchrun`` (``torch.distributed.run``) on this machine for the user.

Each of the N processes runs ``formers train`` with the same arguments (``python -m formers.cli.main train ...``);
:mod:`formers.training.distributed` then finds the launch in the environment. Several machines are the business of
``torchrun`` itself (``--nnodes`` and a rendezvous endpoint): see the README's "Many GPUs". When a rank dies, torchrun
stops the others; :func:`launch` turns that into one line naming the rank and its exit code.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass


@dataclass
class LaunchFailed(RuntimeError):
    """A rank of a ``torchrun`` launch failed (torchrun stopped the others)."""

    rank: int
    exitcode: int

    def __str__(self) -> str:
        return (f"rank {self.rank} of the distributed run failed (exit code {self.exitcode}); the other ranks were "
                "stopped and the last complete checkpoint is kept (its error is printed above)")


def torchrun_args(nproc_per_node: int, train_argv: list[str]) -> list[str]:
    """The ``torch.distributed.run`` command line (after ``python -m torch.distributed.run``) that starts
    ``nproc_per_node`` ranks of ``formers train TRAIN_ARGV`` on this machine (``--standalone``: a free local port)."""
    if isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1:
        raise ValueError(f"nproc_per_node (--nproc-per-node) must be an int >= 1, got {nproc_per_node!r}")
    return ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc_per_node),
            "-m", "formers.cli.main", "train", *train_argv]


def launch(nproc_per_node: int, train_argv: list[str]) -> None:
    """Runs ``formers train TRAIN_ARGV`` on ``nproc_per_node`` local ranks through ``torch.distributed.run`` and
    waits for them.

    Raises:
        LaunchFailed: a rank exited with an error (naming the first that failed and its exit code).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(torchrun_args(nproc_per_node, train_argv))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.ERROR)  # its failure report is ours, in one line
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        sys.stderr.flush()
        raise LaunchFailed(rank, failure.exitcode) from None
