"""What the route modules share: dependencies on app state, and running CPU work off the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from fastapi import Depends, Request

from modelserve.registry import ModelRegistry
from modelserve.settings import Settings

T = TypeVar("T")


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def run_cpu(settings: Settings, body_size: int, work: Callable[[], T]) -> T:
    """Run validation + prediction inline for small bodies, in a worker thread for large ones.

    Large batches never stall the event loop; small ones skip the thread hop, which would cost
    more than the work itself.
    """
    if body_size > settings.offload_body_bytes:
        return await anyio.to_thread.run_sync(work)
    return work()
