"""Prometheus metrics: what the server did, per model and version, and per HTTP route.

One :class:`Metrics` object per app, on its own collector registry, so two apps in one process
(tests) never share counts. With several worker processes (``modelserve serve --workers N``)
``PROMETHEUS_MULTIPROC_DIR`` is set before any worker starts; every worker then writes its
values to files there, and a scrape of ``/metrics`` on any worker sums all of them
(prometheus-client's multiprocess mode), so the totals are the server's, not one worker's.

The registry reports loads through :class:`~modelserve.core.registry.RegistryEvents`; the
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
    from modelserve.core.registry import ModelState

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
        # A pending entry: [latency sum, count per latency bucket..., rows sum, count per bucket...]
        self._rows_at = 1 + len(self._bounds)
        self._width = self._rows_at + 1 + len(self._row_bounds)
        self._pending: _Pending = _Pending()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- requests -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        route: str,
        status: int,
        seconds: float,
        prediction: tuple[str, int, str, int] | None = None,
    ) -> None:
        """Count one HTTP request, and ``prediction`` (model, version, API, rows) when it made one.

        Pending until the next :meth:`flush`: one dictionary entry per kind of request holds
        its latency histogram (shared by the HTTP and the prediction series, which time the
        same span) and its rows histogram, so a request costs one lookup and two bisects.
        """
        key = (method, route, status, None if prediction is None else prediction[:3])
        observed = self._pending.requests.get(key)
        if observed is None:
            observed = self._pending.requests[key] = [0.0] * self._width
        observed[0] += seconds
        observed[1 + bisect_left(self._bounds, seconds)] += 1
        if prediction is not None and prediction[3]:
            rows, at = prediction[3], self._rows_at
            observed[at] += rows
            observed[at + 1 + bisect_left(self._row_bounds, rows)] += 1

    def flush(self) -> None:
        """Fold the pending counts into the prometheus-client metrics (event-loop thread)."""
        pending, self._pending = self._pending, _Pending()
        at = self._rows_at
        for (method, route, status, prediction), observed in pending.requests.items():
            latency, rows = observed[:at], observed[at:]
            count = sum(latency[1:])
            self._child(self.http_requests, method, route, str(status)).inc(count)
            add_pending(self._child(self.http_latency, method, route), latency)
            if prediction is None:
                continue
            model, version, api = prediction[0], str(prediction[1]), prediction[2]
            self._child(self.requests, model, version, api, outcome_of(status)).inc(count)
            add_pending(self._child(self.request_latency, model, version, api), latency)
            if any(rows[1:]):
                self._child(self.rows, model, version).inc(rows[0])
                add_pending(self._child(self.request_rows, model, version), rows)

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

    __slots__ = ("requests",)

    def __init__(self) -> None:
        # (method, route, status, (model, version, API) or None) -> see Metrics._width
        self.requests: dict[tuple[str, str, int, tuple[str, int, str] | None], list[float]] = {}


def observe_pending(
    table: dict[Any, list[float]], key: Any, value: float, bounds: tuple[float, ...]
) -> None:
    """[sum, count in bucket 0, bucket 1, ..., +Inf]: one bisect, two additions."""
    observed = table.get(key)
    if observed is None:
        observed = table[key] = [0.0] * (len(bounds) + 1)
    observed[0] += value
    observed[1 + bisect_left(bounds, value)] += 1


def add_pending(histogram: Any, observed: list[float]) -> None:
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
