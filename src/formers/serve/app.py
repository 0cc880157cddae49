"""The playground's FastAPI app: a JSON API over the loaded models (OpenAPI docs at ``/docs``) and one static page.

    GET  /                 the page (index.html, app.js, style.css, read once at startup)
    GET  /api/models       the models, their tasks and the server's limits
    POST /api/translate    {"model", "text", "beam"}                         -> translation + attention
    POST /api/generate     {"model", "prompt", "max_new_tokens", ...}        -> NDJSON stream of text, then the end
    POST /api/classify     multipart: model, image, top_k                    -> class probabilities + attention
    POST /api/detect       multipart: model, image, threshold                -> boxes + attention
    POST /api/embed        {"model", "sentences", "attention_of"}            -> cosine similarities + attention

A bad request gets a 4xx with a ``detail`` message: 422 for a field that fails validation (pydantic), 400 for input
the model refuses (our ``ValueError``/``TypeError``), 404 for an unknown model id, 409 for a model that does
another task, 413 for an upload over the limit. Models are named by id; no request names a path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from formers.serve import tasks
from formers.serve.models import MODEL_ID, Limits, ServedModel, load_models

ModelId = Annotated[str, Field(pattern=MODEL_ID, description="a model id from GET /api/models")]
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}
STATIC_TYPES = {"js": "text/javascript", "css": "text/css"}


class TranslateRequest(BaseModel):
    model: ModelId
    text: str = Field(min_length=1, description="the sentence to translate")
    beam: int = Field(1, ge=1, le=16, description="beam size (1 = greedy)")


class GenerateRequest(BaseModel):
    model: ModelId
    prompt: str = Field("", description="text to continue (empty: start after the end-of-text token)")
    max_new_tokens: int = Field(40, ge=1, description="tokens to generate (at most the server's limit)")
    greedy: bool = Field(False, description="take the most likely token instead of sampling")
    temperature: float = Field(0.8, gt=0, le=100)
    top_k: int | None = Field(200, ge=1)
    seed: int | None = Field(None, ge=0, lt=2**63, description="makes sampling reproducible")
    stop: list[str] = Field(default_factory=list, max_length=8, description="stop when the text contains one")


class EmbedRequest(BaseModel):
    model: ModelId
    sentences: list[str] = Field(min_length=2, description="sentences to compare")
    attention_of: int = Field(0, ge=0, description="the sentence whose attention is shown")


def create_app(checkpoints: list[str | Path], limits: Limits | None = None, device: str = "cpu") -> FastAPI:
    """The playground app serving ``checkpoints``, each loaded once, here.

    Args:
        checkpoints: checkpoint, run or Hugging Face directories (ids are their names; see
            :func:`formers.serve.models.model_ids`).
        limits: what one request may ask (default :class:`Limits`).
        device: where the models run.
    """
    limits = limits or Limits()
    served = load_models(list(checkpoints), device)
    static = {name: (resources.files("formers.serve").joinpath("static").joinpath(name).read_bytes(), kind)
              for name, kind in STATIC.items()}
    swagger = _swagger_assets()
    app = FastAPI(title="formers playground", version="1", docs_url=None if swagger else "/docs", redoc_url=None,
                  description="The models loaded by `formers serve`: translate, generate, classify, detect, embed; "
                              "each result with its attention weights.")
    if swagger:  # the docs page from local files: nothing is fetched from a CDN
        for name, content in swagger.items():
            app.add_api_route(f"/docs-assets/{name}", _static_route(content, STATIC_TYPES[name.rsplit(".")[-1]]),
                              include_in_schema=False)

        @app.get("/docs", include_in_schema=False)
        def docs() -> Response:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="formers playground API",
                                       swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                       swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="")
    app.state.models, app.state.limits = served, limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_upload_bytes + 64 * 1024)  # an image and the form's fields

    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def bad_input(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(error).split())}, status_code=400)

    def model_for(model_id: str, task: str) -> ServedModel:
        if model_id not in served:
            raise HTTPException(404, f"no model {model_id!r}; this server has {sorted(served)}")
        if served[model_id].task != task:
            raise HTTPException(409, f"model {model_id!r} does {served[model_id].task}, not {task}")
        return served[model_id]

    async def read_upload(image: UploadFile) -> bytes:
        data = await image.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise HTTPException(413, f"the image is larger than this server's limit of {limits.max_upload_bytes} bytes")
        return data

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return Response(static["index.html"][0], media_type=static["index.html"][1])

    for name in ("app.js", "style.css"):
        app.add_api_route(f"/static/{name}", _static_route(*static[name]), include_in_schema=False)

    @app.get("/api/models")
    def list_models() -> dict[str, Any]:
        """The loaded models (id, task, family and task details) and the server's limits."""
        return {"models": [m.describe() for m in served.values()], "limits": vars(limits)}

    @app.post("/api/translate")
    def translate(request: TranslateRequest) -> dict[str, Any]:
        """Translates one sentence (greedy or beam search); returns the attention of the decoder on the result."""
        return tasks.translate(model_for(request.model, "translate"), request.text, request.beam, limits)

    @app.post("/api/generate", response_class=StreamingResponse,
              responses={200: {"content": {"application/x-ndjson": {}},
                               "description": 'JSON lines: {"text": piece}..., then {"done": true, "text", "tokens", '
                                              '"attention"} or {"error": message}'}})
    def generate(request: GenerateRequest) -> StreamingResponse:
        """Continues a prompt, streaming the text as the tokens are made (one JSON object per line)."""
        stream = tasks.stream_generate(
            model_for(request.model, "generate"), request.prompt, request.max_new_tokens, limits, request.greedy,
            request.temperature, request.top_k, request.seed, request.stop)

        async def lines():
            try:  # waiting for a line is abandoned at once when the client goes away; then generation stops
                while (line := await anyio.to_thread.run_sync(stream.next_line, abandon_on_cancel=True)) is not None:
                    yield line
            finally:
                stream.close()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/api/classify")
    async def classify(model: Annotated[str, Form(pattern=MODEL_ID)], image: Annotated[UploadFile, File()],
                       top_k: Annotated[int, Form(ge=1, le=1000)] = 5) -> dict[str, Any]:
        """The most likely classes of an uploaded image, with the model's attention."""
        served_model = model_for(model, "classify")
        data = await read_upload(image)
        return await _in_thread(tasks.classify, served_model, data, top_k, limits)

    @app.post("/api/detect")
    async def detect(model: Annotated[str, Form(pattern=MODEL_ID)], image: Annotated[UploadFile, File()],
                     threshold: Annotated[float, Form(ge=0, lt=1)] = 0.5) -> dict[str, Any]:
        """The objects in an uploaded image (boxes in its pixels), with the model's attention."""
        served_model = model_for(model, "detect")
        data = await read_upload(image)
        return await _in_thread(tasks.detect, served_model, data, threshold, limits)

    @app.post("/api/embed")
    def embed(request: EmbedRequest) -> dict[str, Any]:
        """Embeds sentences and returns their cosine similarities, with the attention of one of them."""
        return tasks.embed(model_for(request.model, "embed"), request.sentences, request.attention_of, limits)

    return app


class BodyLimit:
    """Refuses (413) a request whose body is longer than ``max_bytes``: by its Content-Length before reading it, or
    as soon as a chunked body goes past it, so that no upload is spooled to disk past the limit."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self, size: int) -> str:
        return f"the request has {size} bytes or more, more than this server's limit of {self.max_bytes} (an upload)"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await JSONResponse({"detail": self._message(int(length))}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI passes an HTTPException raised while it reads the body through
                raise HTTPException(413, self._message(seen))
            return message

        await self.app(scope, counted, send)


def _swagger_assets() -> dict[str, bytes]:
    """Swagger UI's script and stylesheet from the ``swagger-ui-bundle-v2`` package (in the serve extra), so that
    ``/docs`` works offline; {} without it (FastAPI's docs page then loads them from a CDN)."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return {}
    names = ("swagger-ui-bundle.js", "swagger-ui.css")
    paths = [Path(swagger_ui_path) / name for name in names]
    return {name: path.read_bytes() for name, path in zip(names, paths)} if all(p.is_file() for p in paths) else {}


def _static_route(content: bytes, media_type: str):
    def route() -> Response:
        return Response(content, media_type=media_type)

    return route


async def _in_thread(fn, *args):
    """Runs a blocking model call off the event loop (as FastAPI runs plain ``def`` routes)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
