"""``modelserve serve``: the server, one process, several workers, or a Ray Serve deployment."""

from __future__ import annotations

import contextlib
import enum
import logging
import logging.config
import os
import shutil
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelserve.cli.common import StoreOption, fail, report, settings_from, train_with_status
from modelserve.core.errors import ModelServeError
from modelserve.core.lifecycle import SUPERVISOR_ENV, held, remove_stale
from modelserve.core.registry import load_policy, open_store
from modelserve.core.settings import Settings, settings_environment
from modelserve.ops.gc import paused_gc
from modelserve.ops.logs import logging_config
from modelserve.ops.metrics import MULTIPROC_ENV
from modelserve.training.train import TrainConfig

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger(__name__)

METRICS_DIR_PREFIX = "modelserve-metrics-"
"""The multiprocess metrics directories ``serve --workers N`` makes in the temp folder."""


class Engine(enum.StrEnum):
    uvicorn = "uvicorn"
    ray = "ray"


def serve_command(
    host: Annotated[str | None, typer.Option(help="Bind address [env: MODELSERVE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: MODELSERVE_PORT].")] = None,
    store: StoreOption = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Most rows per request [env: MODELSERVE_MAX_ROWS].")
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(help="Largest request body in bytes [env: MODELSERVE_MAX_BODY_BYTES]."),
    ] = None,
    allow_pickle: Annotated[
        bool | None,
        typer.Option(
            "--allow-pickle/--no-allow-pickle",
            help="Load pickle artifacts [env: MODELSERVE_ALLOW_PICKLE].",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes, one per core [env: MODELSERVE_WORKERS]."),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option(help="Seconds between store scans; 0 = off [env: MODELSERVE_POLL_INTERVAL]."),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="Log level [env: MODELSERVE_LOG_LEVEL].")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="json, text, or auto (text on a terminal) [env: MODELSERVE_LOG_FORMAT]."),
    ] = None,
    train_if_empty: Annotated[
        bool, typer.Option(help="Train the default model first when the store is empty.")
    ] = True,
    engine: Annotated[
        Engine,
        typer.Option(
            help="uvicorn (this machine) or ray (a Ray Serve deployment; modelserve[ray])."
        ),
    ] = Engine.uvicorn,
    replicas: Annotated[
        int, typer.Option(min=1, help="--engine ray: replicas (the minimum when autoscaling).")
    ] = 1,
    max_replicas: Annotated[
        int | None,
        typer.Option(min=1, help="--engine ray: autoscale up to this many replicas."),
    ] = None,
    replica_cpus: Annotated[
        float, typer.Option(min=0.0, help="--engine ray: CPUs reserved per replica.")
    ] = 1.0,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: cluster to join (auto, ray://host:10001); default: a local one."
        ),
    ] = None,
) -> None:
    """Serve every model in the store over HTTP."""
    with paused_gc():  # see modelserve.ops.gc
        import uvicorn  # noqa: PLC0415 - only this command needs the server

        from modelserve.http.runtime import Runtime  # noqa: PLC0415
        from modelserve.http.staged import StagedApp  # noqa: PLC0415

    settings = settings_from(
        host=host,
        port=port,
        store=store,
        max_rows=max_rows,
        max_body_bytes=max_body_bytes,
        allow_pickle=allow_pickle,
        poll_interval=poll_interval,
        workers=workers,
        log_level=log_level,
        log_format=log_format,
    )
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)
    logging.captureWarnings(True)  # a library's warning is a log line too, not bare stderr
    model_store = open_store(settings)
    model_store.remove_stale_temporaries()
    if train_if_empty and model_store.is_empty() and not settings.store.is_file():
        logger.info("the store %s is empty: training the default model", settings.store)
        report(train_with_status(TrainConfig(name=settings.default_model), settings))
    problem = model_store.problem()
    if problem is not None:
        fail(problem)
    try:
        load_policy(settings)  # a verify key that cannot be used stops here, in one line
    except ModelServeError as exc:
        fail(exc.message)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; a drained,
    # orderly stop is a success, so the process exits 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    if engine is Engine.ray:
        from modelserve.cli import ray_engine  # noqa: PLC0415

        options = ray_engine.RayOptions(
            address=ray_address,
            replicas=replicas,
            max_replicas=max_replicas,
            replica_cpus=replica_cpus,
        )
        try:
            ray_engine.run(settings, options)
        except ModelServeError as exc:
            fail(exc.message)
        return
    if settings.workers > 1:
        _serve_workers(settings, log_config)
        return
    # Listening starts with the fast lane once the models are loaded; the FastAPI app is built
    # in the background and answers everything else (modelserve.http.staged).
    with paused_gc():
        staged = StagedApp(Runtime(settings), on_failure=lambda: _stop(server))
    config = uvicorn.Config(staged, **_uvicorn_options(settings, log_config))
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if staged.failed:
        fail("the server stopped: it could not build its HTTP app (traceback above)")
    if not server.started:
        raise SystemExit(3)  # uvicorn's own exit status when start-up fails


def _serve_workers(settings: Settings, log_config: dict[str, Any]) -> None:
    """Run ``settings.workers`` processes on one port.

    Each worker builds its own app from the environment: its own registry, store watcher and
    readiness, exactly as a single-process server (listening before its FastAPI app is built).
    Metrics go to a fresh multiprocess directory (unless PROMETHEUS_MULTIPROC_DIR names one),
    so a scrape on any worker reports the whole server's totals; it is removed when the server
    stops, and, if the server was killed, by the next one to start. Workers stop when this
    process dies, however it dies (:func:`modelserve.core.lifecycle.die_with_parent`).
    """
    import uvicorn  # noqa: PLC0415

    os.environ.update(settings_environment(settings))
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    owned = None
    stack = contextlib.ExitStack()
    if not os.environ.get(MULTIPROC_ENV):
        remove_stale(Path(tempfile.gettempdir()), METRICS_DIR_PREFIX, older_than=2.0)
        owned = tempfile.mkdtemp(prefix=METRICS_DIR_PREFIX)
        stack.enter_context(held(Path(owned)))  # while this supervisor lives
        os.environ[MULTIPROC_ENV] = owned
    try:
        uvicorn.run(
            "modelserve.http.staged:create_staged_app",
            factory=True,
            workers=settings.workers,
            **_uvicorn_options(settings, log_config),
        )
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)
        stack.close()


def _uvicorn_options(settings: Settings, log_config: dict[str, Any]) -> dict[str, Any]:
    """What uvicorn serves with, one process or several."""
    from modelserve.http.connections import PROTOCOL  # noqa: PLC0415 - imports uvicorn

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config,
        "access_log": False,  # modelserve's access log replaces uvicorn's
        "ws": "none",  # no WebSocket routes: skips importing a WebSocket library at start
        "http": PROTOCOL,  # uvicorn's httptools, its connections under the header deadline
        "timeout_graceful_shutdown": settings.drain_timeout,
    }


def _stop(server: uvicorn.Server) -> None:
    """Ask ``server`` to shut down gracefully (from any thread: its loop polls the flag)."""
    server.should_exit = True


def _exit_after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
