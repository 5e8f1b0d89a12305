"""A short road for small, well-formed prediction requests, beside the full FastAPI app.

FastAPI's routing, dependency injection and exception middleware cost more than validating
and predicting a one-row batch. This ASGI middleware answers small ``POST`` predict and infer
requests itself, with the same core calls the routes make (registry -> predictor / oip), and
hands *everything else* to the app untouched: other routes, large bodies (which the routes
offload to a thread under the deadline), servers with an inference key, and every request that
fails in any way, which the app then answers with its usual error body. So the fast path
changes how fast a good answer comes, never what any answer is.
"""

from __future__ import annotations

import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelserve import oip
from modelserve.errors import ModelServeError
from modelserve.observe import SCOPE_KEY, RequestInfo
from modelserve.registry import ModelRegistry
from modelserve.settings import Settings

_NATIVE = re.compile(r"^/v1/models/([^/]+)/(?:versions/(\d+)/)?predict$")
_V2 = re.compile(r"^/v2/models/([^/]+)/(?:versions/(\d+)/)?infer$")
_JSON_HEADERS = [(b"content-type", b"application/json")]
_TEMPLATES = {
    (False, False): "/v1/models/{name}/predict",
    (False, True): "/v1/models/{name}/versions/{version}/predict",
    (True, False): "/v2/models/{name}/infer",
    (True, True): "/v2/models/{name}/versions/{version}/infer",
}


class FastPathMiddleware:
    """Answer small good predict/infer requests directly; pass everything else to the app."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.default_model = settings.default_model
        self.max_inline = settings.offload_body_bytes
        self.enabled = settings.inference_api_key is None
        self.micro_batching = settings.micro_batching

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/predict":
            target: tuple[str, str | None, bool, str] | None = (
                self.default_model,
                None,
                False,
                "/predict",
            )
        else:
            match = _NATIVE.match(path) or _V2.match(path)
            target = (
                (match[1], match[2], match.re is _V2, _TEMPLATES[match.re is _V2, bool(match[2])])
                if match
                else None
            )
        if target is None or _header_length(scope) is not None:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_small(receive, self.max_inline)
        if complete and len(body) <= self.max_inline:
            answer = _answer(
                scope["app"].state.registry,
                body,
                *target,
                scope.get(SCOPE_KEY),
                self.micro_batching,
            )
            if answer is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": answer})
                return
        await self.app(scope, _replay(body, complete, receive), send)


def _header_length(scope: Scope) -> bytes | None:
    """Binary tensor requests take the full path (they are large, and rarely one row)."""
    for key, value in scope["headers"]:
        if key == b"inference-header-content-length":
            return bytes(value)
    return None


async def _read_small(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the body until it ends or passes ``limit``; say whether all of it was read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive that first gives back what the fast path read, then the rest of the stream."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replayed


def _answer(
    registry: ModelRegistry,
    body: bytes,
    name: str,
    version: str | None,
    v2: bool,
    route: str,
    info: RequestInfo | None,
    micro_batching: bool,
) -> bytes | None:
    """The response body for a good request, or None to let the app handle it.

    ``info`` (the request's observability record) learns the model, version and rows only when
    the fast path answers; otherwise the route that answers fills it in.
    """
    try:
        predictor = registry.get(name, None if version is None else int(version))
        if micro_batching and predictor.batchable:
            return None  # the route merges it with other requests to the same model
        if v2:
            encoded = oip.infer(predictor, body, None)
            if encoded.header_length is not None:
                return None
            _note(info, predictor.name, predictor.version, "v2", encoded.rows, route)
            return encoded.body
        prediction = predictor.predict_json(body)
    except ModelServeError:
        return None
    if prediction.probabilities is not None or prediction.predictions.dtype.kind not in "fiu":
        return None  # classifiers' richer bodies are built by the route
    rows = len(prediction.predictions)
    _note(info, predictor.name, predictor.version, "native", rows, route)
    return orjson.dumps(
        {
            "model_name": predictor.name,
            "model_version": predictor.version,
            "predictions": prediction.predictions,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _note(
    info: RequestInfo | None,
    name: str,
    version: int,
    api: str,
    rows: int,
    route: str,
) -> None:
    if info is not None:
        info.model, info.version, info.api, info.rows = name, version, api, rows
        info.route = route
