"""The API layer's one table from core errors to HTTP, and the two error body formats.

Every 4xx and 5xx the app sends, FastAPI's and Starlette's own included, goes through
:func:`error_response`: under ``/v2`` it is the Open Inference Protocol's ``{"error": "..."}``
(what tritonclient and KServe clients read), everywhere else an RFC 9457
``application/problem+json`` document. The status comes from the same table for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelserve.core.errors import (
    ArtifactError,
    AttachmentNotFoundError,
    DeadlineExceededError,
    ForbiddenError,
    InvalidInputError,
    InvalidModelNameError,
    ModelNotFoundError,
    ModelServeError,
    ModelUnavailableError,
    OverloadedError,
    PayloadTooLargeError,
    Problem,
    StoreError,
    UnauthorizedError,
    UnsupportedOutputError,
    VersionNotFoundError,
)
from modelserve.protocol.native import ProblemDetails

if TYPE_CHECKING:
    from fastapi import FastAPI


logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:modelserve:problem:"

ERROR_TABLE: dict[type[ModelServeError], HTTPStatus] = {
    InvalidInputError: HTTPStatus.UNPROCESSABLE_ENTITY,
    UnsupportedOutputError: HTTPStatus.UNPROCESSABLE_ENTITY,
    PayloadTooLargeError: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ModelNotFoundError: HTTPStatus.NOT_FOUND,
    VersionNotFoundError: HTTPStatus.NOT_FOUND,
    AttachmentNotFoundError: HTTPStatus.NOT_FOUND,
    InvalidModelNameError: HTTPStatus.NOT_FOUND,
    ModelUnavailableError: HTTPStatus.SERVICE_UNAVAILABLE,
    ArtifactError: HTTPStatus.SERVICE_UNAVAILABLE,
    OverloadedError: HTTPStatus.SERVICE_UNAVAILABLE,
    DeadlineExceededError: HTTPStatus.GATEWAY_TIMEOUT,
    UnauthorizedError: HTTPStatus.UNAUTHORIZED,
    ForbiddenError: HTTPStatus.FORBIDDEN,
    StoreError: HTTPStatus.INTERNAL_SERVER_ERROR,
    ModelServeError: HTTPStatus.INTERNAL_SERVER_ERROR,
}
"""Core error class -> HTTP status; the most specific class in an error's MRO wins."""

ERROR_HEADERS: dict[type[ModelServeError], dict[str, str]] = {
    UnauthorizedError: {"WWW-Authenticate": "Bearer"},
    OverloadedError: {"Retry-After": "1"},
    # A client too slow to send its body may still be sending it: do not wait for the rest.
    DeadlineExceededError: {"Connection": "close"},
}
"""Headers an error's response carries besides its body."""


def status_for(exc: ModelServeError) -> HTTPStatus:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return HTTPStatus.INTERNAL_SERVER_ERROR  # pragma: no cover - ModelServeError is in the table


def problem_body(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    problems: Sequence[Problem] = (),
    instance: str | None = None,
) -> bytes:
    """Serialize one problem document (always valid JSON)."""
    phrase = HTTPStatus(status).phrase
    document: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + (code or phrase.lower().replace(" ", "-")),
        "title": phrase,
        "status": status,
        "detail": detail,
        "errors": [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in problems],
    }
    if instance is not None:
        document["instance"] = instance
    return orjson.dumps(document)


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def error_response(
    path: str,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    problems: Sequence[Problem] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The error body for a request to ``path``: V2's ``{"error"}`` or problem+json."""
    if is_v2(path):
        return Response(
            orjson.dumps({"error": detail}),
            status_code=status,
            media_type="application/json",
            headers=headers,
        )
    return Response(
        problem_body(status, detail, code=code, problems=problems, instance=path),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def exception_response(method: str, path: str, exc: ModelServeError) -> Response:
    """The response for a core error raised by a request to ``path``, from the table."""
    status = status_for(exc)
    if status in (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.GATEWAY_TIMEOUT):
        logger.error("%s %s failed: %s", method, path, exc.message)
    return error_response(
        path,
        status,
        exc.message,
        code=exc.code,
        problems=exc.problems,
        headers=ERROR_HEADERS.get(type(exc)),
    )


CLIENT_CLOSED = 499
"""The status recorded for a request whose client went away before it was answered (nginx's);
nothing is sent, there is no one to read it."""


async def _client_gone(request: Request, exc: Exception) -> Response:
    return Response(status_code=CLIENT_CLOSED)


def _describe_error(request: Request, exc: Exception) -> Response:
    """Turn any exception that reached the app's edge into a problem+json response."""
    # Imported here: the app that installed this handler has imported FastAPI already, and the
    # server starts listening before that (modelserve.http.staged), with this module loaded.
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415

    path = request.url.path
    if isinstance(exc, ModelServeError):
        return exception_response(request.method, path, exc)
    if isinstance(exc, RequestValidationError):
        problems = [
            Problem(tuple(error["loc"]), str(error["msg"]), str(error["type"]).replace("_", "-"))
            for error in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems)
        return error_response(
            path, 422, detail or "invalid request", code="invalid-request", problems=problems
        )
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            detail = f"no route for {request.method} {path}"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = f"method {request.method} is not allowed on {path}"
            detail += f" (allowed: {allowed})" if allowed else ""
        else:
            detail = str(exc.detail)
        return error_response(path, exc.status_code, detail, headers=dict(exc.headers or {}))
    return unexpected_response(request.method, path, exc)


def unexpected_response(method: str, path: str, exc: Exception) -> Response:
    """The 500 for an error nobody foresaw (a bug, a model that raises): logged with its
    traceback, never described to the client."""
    logger.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(
        path, 500, "internal server error; the server logged the details", code="internal-error"
    )


async def _error_handler(request: Request, exc: Exception) -> Response:
    return _describe_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through the problem+json table."""
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415 - see _describe_error

    for cls in (ModelServeError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, _error_handler)
    # The client's doing, not the server's: no error, no traceback; the access line says 499.
    app.add_exception_handler(ClientDisconnect, _client_gone)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses, all problem+json."""
    schema = {"$ref": f"#/components/schemas/{ProblemDetails.__name__}"}
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }
