"""Public data files shipped inside the package, gzip-compressed: GPT-2's BPE files (MIT) and tinyshakespeare.

They let a fresh install train the Shakespeare recipes and tokenize with GPT-2's vocabulary offline. A loader asks
for one with :func:`unpack_asset`, which writes a plain copy once into the cache folder, checked against the SHA-256
in :data:`ASSETS`. Sources and licences: ``assets/README.md`` and ``assets/gpt2-bpe/LICENSE``.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from formers.data.downloads import default_cache_dir, verify_sha256
from formers.files import atomic_file

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
"""Where the ``<name>/<file>.gz`` files live."""

ASSETS: dict[str, str] = {
    "gpt2-bpe/encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "gpt2-bpe/vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}
"""Shipped files (``<name>/<file>``, stored as ``<file>.gz``) and the SHA-256 of each uncompressed file."""


def unpack_asset(asset: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """A plain copy of a shipped file at ``root/<name>/<file>``, written (atomically, checksum verified) if absent.

    Args:
        asset: a key of :data:`ASSETS`, e.g. ``"tinyshakespeare/input.txt"``.
        root: folder to unpack into; default :func:`formers.data.downloads.default_cache_dir`.

    Returns:
        The path of the copy, or None when this installation does not ship the file.

    Raises:
        ValueError: ``asset`` is not shipped by formers.
        ChecksumError: a copy already at the destination (or the unpacked file) has another checksum; an existing
            file is left as it is.
    """
    if asset not in ASSETS:
        raise ValueError(f"asset must be one of {sorted(ASSETS)}, got {asset!r}")
    source = ASSETS_DIR / f"{asset}.gz"
    dest = Path(root if root is not None else default_cache_dir()) / asset
    if dest.is_file():
        verify_sha256(dest, ASSETS[asset])
        return dest
    if not source.is_file():
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dest) as tmp:
        with gzip.open(source, "rb") as packed, open(tmp, "wb") as out:
            shutil.copyfileobj(packed, out)
        verify_sha256(tmp, ASSETS[asset])
    return dest
