"""Prometheus metrics: what the server did, per model and version, and per HTTP route.

One :class:`Metrics` object per app, on its own collector registry, so two apps in one process
(tests) never share counts. With several worker processes (``modelserve serve --workers N``)
``PROMETHEUS_MULTIPROC_DIR`` is set before any worker starts; every worker then writes its
values to files there, and a scrape of ``/metrics`` on any worker sums all of them
(prometheus-client's multiprocess mode), so the totals are the server's, not one worker's.

The registry reports loads through :class:`~modelserve.registry.RegistryEvents`; the
observability middleware reports requests. Requests are counted on the hot path into plain
dictionaries (a few hundred nanoseconds; prometheus-client's own ``inc``/``observe`` cost
~15 µs for the six series a prediction touches) and folded into the prometheus-client metrics
by :meth:`Metrics.flush`: before every scrape, and every second from the app's lifespan so the
other workers' files are never more than a second behind.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from modelserve.registry import ModelState

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds: a one-row predict takes well under a millisecond, so the buckets start there."""

ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, when this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def outcome_of(status: int) -> str:
    """The ``outcome`` label of a prediction request's status."""
    if status < 400:
        return "success"
    if status < 500:
        return "client_error"
    return "server_error"


class Metrics:
    """Every metric the server exports, and the two ways to read them (text, registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelserve_requests",
            "Prediction requests (native and /v2) by model, version, API and outcome.",
            ["model", "version", "api", "outcome"],
            registry=r,
        )
        self.request_latency = Histogram(
            "modelserve_request_duration_seconds",
            "Time from a prediction request's arrival to its last response byte.",
            ["model", "version", "api"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(
            "modelserve_rows_predicted",
            "Rows predicted, by model and version.",
            ["model", "version"],
            registry=r,
        )
        self.request_rows = Histogram(
            "modelserve_request_rows",
            "Rows per successful prediction request.",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "modelserve_batch_requests",
            "Requests merged into one predict call (micro-batching).",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "modelserve_batch_rows",
            "Rows in one merged predict call (micro-batching).",
            ["model", "version"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.loads = Counter(
            "modelserve_model_loads",
            "Model versions verified, deserialized, smoke-tested and put into service.",
            ["model"],
            registry=r,
        )
        self.load_failures = Counter(
            "modelserve_model_load_failures",
            "Model versions refused (verification, deserialization or smoke test failed).",
            ["model"],
            registry=r,
        )
        self.models_loaded = Gauge(
            "modelserve_model_versions_loaded",
            "Versions of each model in service (with workers: the most any worker has).",
            ["model"],
            registry=r,
            multiprocess_mode="max",
        )
        self.http_requests = Counter(
            "modelserve_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "modelserve_http_request_duration_seconds",
            "Time from an HTTP request's arrival to its last response byte, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._known_models: set[str] = set()
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._row_bounds = (*map(float, ROW_BUCKETS), float("inf"))
        self._pending: _Pending = _Pending()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- requests -----------------------------------------------------------------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request (pending until the next :meth:`flush`)."""
        pending = self._pending
        key = (method, route, status)
        pending.http[key] = pending.http.get(key, 0) + 1
        _observe(pending.http_latency, (method, route), seconds, self._bounds)

    def prediction(
        self, model: str, version: int, api: str, status: int, rows: int, seconds: float
    ) -> None:
        """Count one prediction request (pending until the next :meth:`flush`)."""
        pending = self._pending
        key = (model, version, api, status)
        pending.requests[key] = pending.requests.get(key, 0) + 1
        _observe(pending.latency, (model, version, api), seconds, self._bounds)
        if rows:
            _observe(pending.rows, (model, version), rows, self._row_bounds)

    def flush(self) -> None:
        """Fold the pending counts into the prometheus-client metrics (event-loop thread)."""
        pending, self._pending = self._pending, _Pending()
        for (method, route, status), count in pending.http.items():
            self._child(self.http_requests, method, route, str(status)).inc(count)
        for (method, route), observed in pending.http_latency.items():
            _add(self._child(self.http_latency, method, route), observed)
        for (model, version, api, status), count in pending.requests.items():
            outcome = outcome_of(status)
            self._child(self.requests, model, str(version), api, outcome).inc(count)
        for (model, version, api), observed in pending.latency.items():
            _add(self._child(self.request_latency, model, str(version), api), observed)
        for (model, version), observed in pending.rows.items():
            self._child(self.rows, model, str(version)).inc(observed[0])
            _add(self._child(self.request_rows, model, str(version)), observed)

    def batch(self, model: str, version: int, requests: int, rows: int) -> None:
        """One merged predict call (once per call, not per request: observed directly)."""
        self._child(self.batch_requests, model, str(version)).observe(requests)
        self._child(self.batch_rows, model, str(version)).observe(rows)

    # -- registry events ----------------------------------------------------------------------

    def version_loaded(self, name: str, version: int) -> None:
        self._child(self.loads, name).inc()

    def version_refused(self, name: str, version: int, reason: str) -> None:
        self._child(self.load_failures, name).inc()

    def published(self, models: Mapping[str, ModelState]) -> None:
        for name, state in models.items():
            self._child(self.models_loaded, name).set(len(state.loaded))
        for name in self._known_models - set(models):
            self._child(self.models_loaded, name).set(0)
        self._known_models |= set(models)

    # -- exposition ---------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type: this process's values, or all workers'."""
        self.flush()
        directory = multiprocess_dir()
        if directory is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST


class _Pending:
    """Counts since the last flush; replaced as a whole by :meth:`Metrics.flush`."""

    __slots__ = ("http", "http_latency", "latency", "requests", "rows")

    def __init__(self) -> None:
        self.http: dict[tuple[str, str, int], int] = {}
        self.http_latency: dict[tuple[str, str], list[float]] = {}
        self.requests: dict[tuple[str, int, str, int], int] = {}
        self.latency: dict[tuple[str, int, str], list[float]] = {}
        self.rows: dict[tuple[str, int], list[float]] = {}


def _observe(
    table: dict[Any, list[float]], key: Any, value: float, bounds: tuple[float, ...]
) -> None:
    """[sum, count in bucket 0, bucket 1, ..., +Inf]: one bisect, two additions."""
    observed = table.get(key)
    if observed is None:
        observed = table[key] = [0.0] * (len(bounds) + 1)
    observed[0] += value
    observed[1 + bisect_left(bounds, value)] += 1


def _add(histogram: Any, observed: list[float]) -> None:
    """Add pending observations to a histogram child in bulk.

    prometheus-client offers only ``observe(one_value)``; its child keeps a ``_sum`` value
    and one ``_buckets`` value per upper bound (non-cumulative), both with ``inc``. A test
    compares the exposition with plain ``observe`` calls, so a change there fails loudly.
    """
    histogram._sum.inc(observed[0])
    for bucket, count in zip(histogram._buckets, observed[1:], strict=True):
        if count:
            bucket.inc(count)


__all__ = ["LATENCY_BUCKETS", "MULTIPROC_ENV", "Metrics", "multiprocess_dir", "outcome_of"]
