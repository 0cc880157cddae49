"""``formers serve --checkpoint DIR [--checkpoint DIR ...] [--host 127.0.0.1] [--port 8000]``: the web playground.

Each checkpoint is loaded once; the page at ``http://HOST:PORT/`` has a panel per model with its task (translate,
generate, classify, detect, embed) and the attention view of each result; the JSON API is documented at ``/docs``.
It listens on localhost unless ``--host`` says otherwise. Needs the ``serve`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from formers.devices import resolve_device
from formers.layers import check_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a web playground (and JSON API) for checkpoints, with their attention maps")
    p.add_argument("--checkpoint", required=True, type=Path, action="append",
                   help="checkpoint, run or Hugging Face directory (repeat for several models)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-new-tokens", type=int, default=256, help="most tokens one generation may make (256)")
    p.add_argument("--max-text-chars", type=int, default=2000, help="longest text a request may send (2000)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest image upload in MB (8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_int(args.port, "--port", 0, 65535)
    if not 0 < args.max_upload_mb <= 1024:
        raise ValueError(f"--max-upload-mb must be in (0, 1024], got {args.max_upload_mb}")
    try:
        import uvicorn

        from formers.serve import Limits, create_app
    except ImportError as e:
        raise ValueError(f"formers serve needs the serve extra: pip install 'formers[serve]' ({e})") from None
    limits = Limits(max_new_tokens=args.max_new_tokens, max_text_chars=args.max_text_chars,
                    max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    app = create_app(args.checkpoint, limits, device=str(resolve_device(args.device)))
    ids = ", ".join(f"{m.id} ({m.task})" for m in app.state.models.values())
    print(f"formers serve: {ids} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
