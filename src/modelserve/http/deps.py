"""What the route modules share: app state, API-key checks, and the request deadline."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from pydantic import SecretStr

from modelserve.core.batching import Batchers
from modelserve.core.errors import DeadlineExceededError, ForbiddenError, UnauthorizedError
from modelserve.core.predictor import Predictor
from modelserve.core.registry import ModelRegistry
from modelserve.core.settings import Settings
from modelserve.dataplane.plane import Answer, Prepared, answer_merged
from modelserve.ops.observe import note_model
from modelserve.protocol.wire import Encoded

T = TypeVar("T")
U = TypeVar("U")


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_batchers(request: Request) -> Batchers:
    batchers: Batchers = request.app.state.batchers
    return batchers


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
BatchersDep = Annotated[Batchers, Depends(get_batchers)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


def _matches(presented: str, expected: SecretStr | None) -> bool:
    if expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


def require_inference_key(request: Request, settings: SettingsDep) -> None:
    """Inference and model metadata: open unless an inference key is configured."""
    if settings.inference_api_key is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise UnauthorizedError(
            "this endpoint needs an API key: send 'Authorization: Bearer <key>'"
        )
    # Both comparisons always run: the time taken does not tell which key was close.
    inference = _matches(presented, settings.inference_api_key)
    admin = _matches(presented, settings.admin_api_key)
    if not (inference or admin):
        raise ForbiddenError("the API key is not valid")


def require_admin_key(request: Request, settings: SettingsDep) -> None:
    """The repository API: needs the admin key; closed when none is set, unless opened."""
    if settings.admin_api_key is None:
        if settings.open_repository:
            return
        raise ForbiddenError(
            "the repository API is off: set MODELSERVE_ADMIN_API_KEY (or "
            "MODELSERVE_OPEN_REPOSITORY=true on a trusted network)"
        )
    presented = _presented_key(request)
    if presented is None:
        raise UnauthorizedError(
            "the repository API needs the admin API key: send 'Authorization: Bearer <key>'"
        )
    if not _matches(presented, settings.admin_api_key):
        raise ForbiddenError("the API key does not grant the repository API")


InferenceAccess = Depends(require_inference_key)
AdminAccess = Depends(require_admin_key)


async def read_and_run(request: Request, settings: Settings, work: Callable[[bytes], T]) -> T:
    """Read the body and run ``work`` on it within the request deadline."""
    return await read_run_and_await(request, settings, work, _itself)


async def _itself(value: T) -> T:
    return value


async def read_run_and_await(
    request: Request,
    settings: Settings,
    work: Callable[[bytes], T],
    then: Callable[[T], Awaitable[U]],
) -> U:
    """Read the body and run ``work`` on it, then ``then`` on its result, within the deadline.

    Small bodies are handled inline (a thread hop would cost more than the work); large ones in
    a worker thread, so a big batch never stalls the event loop. ``then`` is where a validated
    batch waits for its micro-batch. Past the deadline the client gets a 504 at once; a worker
    thread still busy is left to finish on its own.
    """
    try:
        with anyio.fail_after(settings.request_timeout):
            body = await request.body()
            if len(body) > settings.offload_body_bytes:
                result = await anyio.to_thread.run_sync(work, body, abandon_on_cancel=True)
            else:
                result = work(body)
            return await then(result)
    except TimeoutError:
        raise DeadlineExceededError.after(settings.request_timeout) from None


async def predict_request(
    request: Request,
    settings: Settings,
    predictor: Predictor,
    answer: Callable[[bytes], Encoded],
    prepare: Callable[[bytes], Prepared],
    form: Answer,
) -> Encoded:
    """One prediction request of any wire format through the data plane: its body read within
    the deadline, then ``answer`` (decode, check, predict, encode at once) or, for a model that
    merges requests, ``prepare`` and a place in its next merged call, encoded as ``form``; the
    model, version and rows noted for the access log and metrics."""
    info = note_model(request.scope, predictor.name, predictor.version, form)  # the api label
    batcher = get_batchers(request).get(predictor)
    if batcher is None:
        encoded = await read_and_run(request, settings, answer)
    else:
        encoded = await read_run_and_await(
            request, settings, prepare, partial(answer_merged, batcher, form=form)
        )
    if info is not None:
        info.rows = encoded.rows
    return encoded
