"""Once-per-device checks of the Triton kernels against their plain-torch references.

Each kernel module keeps a record of the CUDA devices (and compiled variants) it has checked; :func:`checked_once`
runs the check the first time a (device, variant) is asked for (never inside a CUDA-graph capture: callers ask
before capturing), warns once where it fails, and answers from the record after that.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch


def checked_once(
    record: dict[tuple, bool],
    device: torch.device | str,
    check: Callable[[torch.device], str | None],
    unavailable: str | None,
    have_triton: bool,
    what: str,
    otherwise: str,
    variant: tuple = (),
) -> bool:
    """Whether the kernel may run on ``device``: False off CUDA; else ``check(cuda device)`` (the first mismatch
    against the reference, or None) decides, once per (device index, ``*variant``).

    Args:
        record: the kernel's record, (device index, *variant) -> passed.
        device: where the kernel would run.
        check: returns a description of the first difference from the reference, or None.
        unavailable: why the kernel cannot run in this process at all (Triton missing...), or None.
        have_triton: whether Triton imported (without it the reference is simply the path: no warning).
        what, otherwise: the warning's words, "{what} failed its check on cuda:N (...); {otherwise}".
        variant: what else the kernel was compiled for (dtype, widths...).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False
    index = torch.cuda.current_device() if device.index is None else device.index
    key = (index, *variant)
    if key not in record:
        problem = unavailable
        if problem is None:
            try:
                with torch.cuda.device(index):
                    problem = check(torch.device("cuda", index))
            except Exception as error:  # noqa: BLE001 - any failure to compile or launch: do not use it here
                problem = f"{type(error).__name__}: {error}"
        if problem is not None and have_triton:
            warnings.warn(f"{what} failed its check on cuda:{index} ({problem}); {otherwise}", RuntimeWarning,
                          stacklevel=3)
        record[key] = problem is None
    return record[key]
