"""``modelserve serve --engine ray``: the same app as a Ray Serve deployment (FastAPI ingress).

Each replica builds the app with :func:`~modelserve.http.app.create_app` from the same settings, so
it loads, verifies and watches the store exactly as a single-process server does: its own
registry, readiness and hot swap. Ray Serve's HTTP proxy spreads requests over the replicas.
On a multi-node cluster every node must see the store at the same path (a shared filesystem).

Needs the optional extra: ``pip install 'modelserve[ray]'``. Imported only by that command.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

from modelserve.core.errors import EngineUnavailableError
from modelserve.core.settings import Settings

logger = logging.getLogger(__name__)

APP_NAME = "modelserve"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_MISSING = "--engine ray needs Ray Serve: pip install 'modelserve[ray]'"
DEPLOYMENT_NAME = "ModelServe"


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How to deploy: where the cluster is, and how many replicas."""

    address: str | None = None
    """None starts a local Ray instance on loopback; ``auto`` or ``ray://host:port`` joins one."""
    replicas: int = 1
    max_replicas: int | None = None
    """With a value above ``replicas``, Ray Serve autoscales between the two."""
    replica_cpus: float = 1.0
    target_ongoing_requests: float = 32.0


def deployment_options(options: RayOptions) -> dict[str, Any]:
    """Arguments of ``serve.deployment`` for ``options``: fixed replicas or autoscaling."""
    common: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": {"num_cpus": options.replica_cpus},
        "max_ongoing_requests": 256,
        "graceful_shutdown_timeout_s": 30,
    }
    if options.max_replicas is not None and options.max_replicas > options.replicas:
        common["autoscaling_config"] = {
            "min_replicas": options.replicas,
            "initial_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
        }
    else:
        common["num_replicas"] = options.replicas
    return common


def build_application(settings: Settings, options: RayOptions) -> Any:
    """The Ray Serve application: a deployment whose replicas each run ``create_app(settings)``."""
    try:
        from ray import serve  # noqa: PLC0415
    except ImportError as exc:
        raise EngineUnavailableError(_MISSING) from exc
    # Replicas may start in another working directory (or on another node): absolute paths.
    # Ray Serve's proxy already answers with X-Request-ID (the client's, or its own id, which
    # it passes on to the replica): the app must not add a second copy.
    update: dict[str, Any] = {
        name: path.resolve()
        for name in ("store", "verify_key", "signing_key")
        if (path := getattr(settings, name)) is not None
    }
    settings = settings.model_copy(update={**update, "request_id_header": False})

    def build_asgi_app() -> Any:
        # Runs inside each replica, at its start: models load in the app's lifespan there.
        from modelserve.http.app import create_app  # noqa: PLC0415

        return create_app(settings)

    @serve.ingress(build_asgi_app)
    class ModelServe:
        """One replica: the whole modelserve app, built by ``build_asgi_app``."""

    return serve.deployment(**deployment_options(options))(ModelServe).bind()


def run(settings: Settings, options: RayOptions) -> None:
    """Start (or join) Ray, deploy, and serve until SIGTERM or SIGINT; then shut down cleanly."""
    if options.address is None:
        # A private single-node instance: Ray's switch for single-node mode makes every Ray
        # process (GCS, raylet, agents, proxy) use 127.0.0.1 instead of the machine's address.
        # Read when ray is imported, and inherited by the processes it starts.
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray  # noqa: PLC0415
        from ray import serve  # noqa: PLC0415
    except ImportError as exc:
        raise EngineUnavailableError(_MISSING) from exc

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    init: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if options.address is None:
        # A private local instance: loopback only, no dashboard. "local" always starts a new
        # one; without it ray.init attaches to a cluster it finds (RAY_ADDRESS, `ray start`).
        init.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        init["address"] = options.address
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineUnavailableError(f"cannot start or reach Ray: {exc}") from exc
    # After ray.init, which installs a handler that aborts the process on SIGTERM: a stop
    # asked for while deploying is honoured once the deployment is up.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(build_application(settings, options), name=APP_NAME, route_prefix="/")
        logger.info(
            "Ray Serve is serving %s on http://%s:%d with %s",
            settings.store,
            settings.host,
            settings.port,
            _describe(options),
        )
        stop.wait()
        logger.info("stopping: draining the replicas and shutting Ray Serve down")
        serve.shutdown()
    finally:
        ray.shutdown()


def _describe(options: RayOptions) -> str:
    if options.max_replicas is not None and options.max_replicas > options.replicas:
        return f"{options.replicas}-{options.max_replicas} replicas (autoscaling)"
    return f"{options.replicas} replica(s)"


__all__ = ["RayOptions", "build_application", "deployment_options", "run"]
