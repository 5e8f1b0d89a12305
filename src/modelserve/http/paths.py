"""The paths the fast lane and the routes share: predict and infer templates, and the probes."""

from __future__ import annotations

DEFAULT_PREDICT = "/predict"
PREDICT = "/v1/models/{name}/predict"
PREDICT_VERSION = "/v1/models/{name}/versions/{version}/predict"
INFER = "/v2/models/{name}/infer"
INFER_VERSION = "/v2/models/{name}/versions/{version}/infer"
V2_PREFIX = "/v2"
INVOCATIONS = "/invocations"
"""MLflow's and SageMaker's scoring path: the default model."""
MODEL_INVOCATIONS = "/v1/models/{name}/invocations"
KSERVE_PREDICT = "/v1/models/{name}:predict"
"""KServe's V1 protocol."""
PING = "/ping"
"""MLflow's and SageMaker's health check: 200 when ready."""

LIVE = "/health/live"
READY = "/health/ready"
V2_LIVE = "/v2/health/live"
V2_READY = "/v2/health/ready"
METRICS = "/metrics"

HEALTH_PROBES = frozenset({LIVE, READY, V2_LIVE, V2_READY, PING})
"""The health probes: the fast lane answers them for a server that is up (and ready)."""
PROBE_PATHS = HEALTH_PROBES | {METRICS}
"""Probed by orchestrators and scrapers: never shed under load, not logged unless asked."""
