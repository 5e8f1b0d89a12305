"""The one settings class. Built once at the entry point and passed down.

Every field can be set by an environment variable with the ``MODELSERVE_`` prefix
(``MODELSERVE_STORE``, ``MODELSERVE_PORT``, ...) or by the CLI flag of the same name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "numpy.dtype",
    "functools.partial",
    "sklearn.utils.validation.check_array",
)
"""Types that skops' own defaults do not trust but the models modelserve trains need.

skops already trusts builtins, NumPy arrays and scikit-learn estimators; tree ensembles also
need the Cython ``Tree`` class, HistGradientBoosting its ``TreePredictor`` (and, for a
classifier with categorical features, ``functools.partial`` of ``check_array``: skops checks the
function a partial wraps as a type of its own), and ``SimpleImputer`` a ``numpy.dtype``. The list
comes from the server's code and configuration, never from an artifact; a test trains every
estimator the trainer offers, on numbers and on mixed-type data, and holds this list to what
they need.
"""


class Settings(BaseSettings):
    """Configuration for the model store, the HTTP server and the safety limits."""

    model_config = SettingsConfigDict(env_prefix="MODELSERVE_", extra="forbid")

    store: Path = Field(
        default=Path("models"),
        description="Directory of the model store (<store>/<name>/<version>/).",
    )
    host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="TCP port of the HTTP server.")
    default_model: str = Field(
        default="default", min_length=1, description="Model served by POST /predict."
    )
    max_rows: int = Field(default=10_000, ge=1, description="Most rows accepted in one request.")
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1, description="Largest request body accepted, in bytes (413)."
    )
    max_error_details: int = Field(
        default=20, ge=1, description="Most field-level problems listed in one error response."
    )
    offload_body_bytes: int = Field(
        default=32 * 1024,
        ge=0,
        description=(
            "Request bodies larger than this are validated and predicted in a worker thread, "
            "so a large batch never stalls the event loop; smaller ones run inline."
        ),
    )
    max_model_bytes: int = Field(
        default=4 * 1024**3,
        ge=1,
        description=(
            "Largest model file the store reads, and the most a skops archive may unpack to; "
            "larger ones are refused unread."
        ),
    )
    allow_pickle: bool = Field(
        default=False,
        description=(
            "Load pickle artifacts (after their sha256 matched the manifest). Pickle runs code "
            "on load, so it is off by default; skops artifacts need no such trust."
        ),
    )
    allow_version_mismatch: bool = Field(
        default=False,
        description="Load artifacts trained with another scikit-learn version (unsupported).",
    )
    strict_readiness: bool = Field(
        default=False,
        description=(
            "Ready only while every model in the store (not unloaded on purpose) has a verified "
            "version; by default one model that can be served is enough, and a model with none "
            "is logged at ERROR and listed in GET /v1/models."
        ),
    )
    trusted_types: list[str] = Field(
        default_factory=list,
        description=(
            "Fully qualified type names skops may load besides its own defaults and "
            "DEFAULT_TRUSTED_TYPES (which this list extends, never replaces)."
        ),
    )
    request_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a request may take to send its body and be predicted, whatever its size "
            "(504 after)."
        ),
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a client may take to send a request's headers, from the moment it "
            "connects or begins the request; the connection is closed after."
        ),
    )
    drain_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a stopping server (SIGTERM) waits for the requests in flight before it "
            "cancels them and exits."
        ),
    )
    max_concurrent_requests: int = Field(
        default=256,
        ge=1,
        description=(
            "Requests served at once; more are refused at once with 503 and Retry-After "
            "instead of queueing without bound. Health probes are never refused."
        ),
    )
    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Key for the repository API (index, load, unload); also grants inference.",
    )
    inference_api_key: SecretStr | None = Field(
        default=None,
        description="When set, predict, infer and model metadata need this key (or the admin key).",
    )
    open_repository: bool = Field(
        default=False,
        description="Serve the repository API with no key when no admin key is set (trusted nets).",
    )
    docs: bool = Field(default=True, description="Serve /docs, /redoc and /openapi.json.")
    poll_interval: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Seconds between scans of the store for new, changed or removed versions while "
            "serving; 0 turns the watcher off."
        ),
    )
    signing_key: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) that `modelserve train` signs manifests with.",
    )
    verify_key: Path | None = Field(
        default=None,
        description="Ed25519 public key (PEM); unsigned or badly signed versions are then refused.",
    )
    compiled_forms: bool = Field(
        default=True,
        description=(
            "Answer from a version's verified compiled form (compiled.bin: tree ensembles, and "
            "pipelines ending in one) where it is faster than scikit-learn; false answers every "
            "version with scikit-learn itself."
        ),
    )
    micro_batching: bool = Field(
        default=True,
        description=(
            "Merge concurrent requests to one model into one predict call (not for linear "
            "models, whose lean predict costs ~1 µs)."
        ),
    )
    batch_max_rows: int = Field(
        default=1024, ge=1, description="Most rows in one merged predict call."
    )
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description=(
            "Fixed milliseconds every merged call waits for more requests; 0 merges what "
            "arrives while the previous call runs, waiting (2 ms at most) only for as many "
            "requests as were in play at the end of the last call."
        ),
    )
    workers: int = Field(
        default=1, ge=1, description="Worker processes of `modelserve serve` (one per core)."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="Log level of modelserve and uvicorn."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines as JSON objects or text; auto = text on a terminal, else JSON.",
    )
    access_log: bool = Field(
        default=True,
        description="One log line per request (id, method, path, model, version, rows, status).",
    )
    log_health: bool = Field(default=False, description="Also log requests to the health probes.")
    metrics: bool = Field(default=True, description="Serve Prometheus metrics at /metrics.")
    tracing: bool = Field(
        default=False,
        description=(
            "Let FastAPI's native OpenTelemetry instrumentation trace requests (with an "
            "OpenTelemetry tracer provider configured). Off, it costs nothing per request."
        ),
    )
    request_id_header: bool = Field(
        default=True,
        description=(
            "Answer with X-Request-ID (the client's, or a new one). Off behind a proxy that "
            "already does, such as Ray Serve's (set so by --engine ray)."
        ),
    )

    @property
    def allowlist(self) -> tuple[str, ...]:
        """Every type skops may load beyond its own: the defaults, then ``trusted_types``."""
        extra = [name for name in self.trusted_types if name not in DEFAULT_TRUSTED_TYPES]
        return (*DEFAULT_TRUSTED_TYPES, *extra)

    @field_validator("trusted_types")
    @classmethod
    def _qualified_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if "." not in name or any(not part.isidentifier() for part in name.split(".")):
                raise ValueError(f"{name!r} is not a fully qualified type name (module.Class)")
        return value


def settings_environment(settings: Settings) -> dict[str, str]:
    """``MODELSERVE_*`` variables that rebuild ``settings`` in another process (workers)."""
    environment: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, list):
            text = json.dumps(value)
        else:
            text = str(value).lower() if isinstance(value, bool) else str(value)
        environment[f"MODELSERVE_{name.upper()}"] = text
    return environment
