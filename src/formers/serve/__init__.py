"""``formers serve``: the web playground (a FastAPI app over loaded checkpoints, and one static page).

Needs the ``serve`` extra (``pip install "formers[serve]"``: FastAPI, uvicorn, python-multipart).
"""

from formers.serve.app import create_app
from formers.serve.models import Limits

__all__ = ["Limits", "create_app"]
