"""/metrics: what the server did, per model, version and route; totals right with workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelserve.core.settings import Settings
from modelserve.core.store import ModelStore
from modelserve.http.app import create_app
from modelserve.ops.metrics import LATENCY_BUCKETS, Metrics, add_pending, observe_pending
from modelserve.training.train import TrainConfig, train
from tests.helpers import ROW, assert_problem, free_port, running_server, serve_command

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_prediction_and_http_metrics_count_what_was_served(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    assert client.post("/predict", json={"instances": [ROW, ROW]}).status_code == 200
    assert (
        client.post("/v1/models/default/versions/1/predict", json={"instances": [ROW]}).status_code
        == 200
    )
    infer = {"inputs": [{"name": "x", "shape": [3, 10], "datatype": "FP64", "data": ROW * 3}]}
    assert client.post("/v2/models/default/infer", json=infer).status_code == 200
    # A classifier's answer is built by the route, not the fast path: counted the same way.
    assert (
        client.post(
            "/v1/models/clf/predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]}
        ).status_code
        == 200
    )
    assert (
        client.post("/predict", content=b'{"instances": [[1]]}', headers=headers).status_code == 422
    )
    assert client.post("/v1/models/nope/predict", json={"instances": [ROW]}).status_code == 404
    assert client.get("/health/ready").status_code == 200

    samples = scrape(client.get("/metrics").text)

    requests = "modelserve_requests_total"
    assert (
        value(samples, requests, model="default", version="1", api="native", outcome="success") == 2
    )
    assert value(samples, requests, model="default", version="1", api="v2", outcome="success") == 1
    assert value(samples, requests, model="clf", version="1", api="native", outcome="success") == 1
    assert (
        value(samples, requests, model="default", version="1", api="native", outcome="client_error")
        == 1
    )
    # The unknown model is not a label value: names sent by clients must not explode series.
    assert total(samples, requests, model="nope") == 0
    assert value(samples, "modelserve_rows_predicted_total", model="default", version="1") == 6
    assert value(samples, "modelserve_request_rows_count", model="default", version="1") == 3
    assert value(samples, "modelserve_request_rows_sum", model="default", version="1") == 6
    latency = "modelserve_request_duration_seconds_count"
    assert value(samples, latency, model="default", version="1", api="native") == 3

    http = "modelserve_http_requests_total"
    assert value(samples, http, method="POST", route="/predict", status="200") == 1
    assert value(samples, http, method="POST", route="/predict", status="422") == 1
    assert (
        value(
            samples,
            http,
            method="POST",
            route="/v1/models/{name}/versions/{version}/predict",
            status="200",
        )
        == 1
    )
    assert value(samples, http, method="POST", route="/v2/models/{name}/infer", status="200") == 1
    assert value(samples, http, method="POST", route="/v1/models/{name}/predict", status="404") == 1
    assert value(samples, http, method="GET", route="/health/ready", status="200") == 1
    assert (
        value(
            samples,
            "modelserve_http_request_duration_seconds_count",
            method="POST",
            route="/predict",
        )
        == 2
    )

    assert value(samples, "modelserve_model_loads_total", model="default") == 1
    assert value(samples, "modelserve_model_loads_total", model="clf") == 1
    assert value(samples, "modelserve_model_versions_loaded", model="default") == 1
    assert value(samples, "modelserve_model_load_failures_total", model="default") == 0


def test_unmatched_paths_share_one_route_label(client: TestClient) -> None:
    for path in ("/nope", "/nope/again", "/v1/whatever"):
        assert client.get(path).status_code == 404
    samples = scrape(client.get("/metrics").text)
    http = "modelserve_http_requests_total"
    assert value(samples, http, method="GET", route="unmatched", status="404") == 3
    assert total(samples, http, route="/nope") == 0


def test_refused_versions_and_new_versions_are_counted(
    store: ModelStore, settings: Settings
) -> None:
    bad = train(TrainConfig(samples=100), store).path / "model.skops"
    bad.write_bytes(b"not a model")
    with TestClient(create_app(settings)) as client:
        samples = scrape(client.get("/metrics").text)
        assert value(samples, "modelserve_model_load_failures_total", model="default") == 1
        assert value(samples, "modelserve_model_loads_total", model="default") == 1
        train(TrainConfig(samples=100), store)  # v3, good
        client.app.state.registry.sync()  # what the watcher does
        samples = scrape(client.get("/metrics").text)
        assert value(samples, "modelserve_model_loads_total", model="default") == 2
        assert value(samples, "modelserve_model_versions_loaded", model="default") == 2
        # v2 is not retried while its files are unchanged, so it is refused once.
        assert value(samples, "modelserve_model_load_failures_total", model="default") == 1


def test_metrics_can_be_switched_off(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"metrics": False}))) as client:
        assert_problem(client.get("/metrics"), 404, "not-found", detail_contains="/metrics")


def test_bulk_histogram_updates_match_prometheus_observe() -> None:
    """The hot path aggregates; the flush must give exactly what observe() one by one gives."""
    values = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 7.0, 31.0, 1e9]
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=one_by_one)
    for v in values:
        reference.observe(v)
    pending: dict[str, list[float]] = {}
    for v in values:
        observe_pending(pending, "k", v, (*LATENCY_BUCKETS, float("inf")))
    add_pending(Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=bulk), pending["k"])

    def without_created(registry: CollectorRegistry) -> Samples:
        text = generate_latest(registry).decode()
        return {k: v for k, v in scrape(text).items() if not k[0].endswith("_created")}

    assert without_created(bulk) == without_created(one_by_one)


def test_counts_are_pending_until_flushed_and_a_scrape_flushes() -> None:
    metrics = Metrics()
    metrics.request("GET", "/x", 200, 0.001)
    before = scrape(generate_latest(metrics.registry).decode())
    assert total(before, "modelserve_http_requests_total") == 0
    after = scrape(metrics.exposition()[0].decode())
    assert (
        value(after, "modelserve_http_requests_total", method="GET", route="/x", status="200") == 1
    )


def test_two_workers_report_the_whole_servers_totals(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    train(TrainConfig(samples=100), store)
    port = free_port()
    command = serve_command(store.root, port, "--workers", "2")
    sent = 60
    with running_server(
        command, port=port, log=tmp_path / "server.log", wait_for="/health/ready"
    ) as base:
        for _ in range(sent):
            # A new connection each time, so the kernel spreads requests over both workers.
            with httpx.Client(base_url=base) as client:
                assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
        # Each worker publishes its counts within a second; poll until both have.
        deadline = time.monotonic() + 10
        while True:
            samples = scrape(httpx.get(base + "/metrics").text)
            served = total(samples, "modelserve_requests_total", outcome="success")
            if served >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert served == sent
    assert value(samples, "modelserve_rows_predicted_total", model="default", version="1") == sent
    http = "modelserve_http_requests_total"
    assert value(samples, http, method="POST", route="/predict", status="200") == sent
    # Both workers loaded the model: each counted its own load.
    assert value(samples, "modelserve_model_loads_total", model="default") == 2
    assert value(samples, "modelserve_model_versions_loaded", model="default") == 1


def test_one_pending_entry_per_kind_of_request_fills_every_series() -> None:
    metrics = Metrics()
    for seconds in (0.0004, 0.002, 0.2):
        metrics.request("POST", "/predict", 200, seconds, ("m", 1, "native", 3))
    metrics.request("POST", "/predict", 422, 0.001, ("m", 1, "native", 0))  # no rows: refused
    metrics.request("POST", "/v2/models/{name}/infer", 200, 0.003, ("m", 2, "v2", 150))
    metrics.request("GET", "/health/live", 200, 0.0001)  # no model at all
    samples = scrape(metrics.exposition()[0].decode())

    http = "modelserve_http_requests_total"
    assert value(samples, http, method="POST", route="/predict", status="200") == 3
    assert value(samples, http, method="POST", route="/predict", status="422") == 1
    assert value(samples, http, method="GET", route="/health/live", status="200") == 1
    latency = "modelserve_http_request_duration_seconds"
    assert value(samples, f"{latency}_count", method="POST", route="/predict") == 4
    assert value(samples, f"{latency}_sum", method="POST", route="/predict") == pytest.approx(
        0.2034
    )
    assert value(samples, f"{latency}_bucket", method="POST", route="/predict", le="0.0025") == 3

    requests = "modelserve_requests_total"
    assert value(samples, requests, model="m", version="1", api="native", outcome="success") == 3
    assert (
        value(samples, requests, model="m", version="1", api="native", outcome="client_error") == 1
    )
    assert value(samples, requests, model="m", version="2", api="v2", outcome="success") == 1
    assert total(samples, requests) == 5  # the probe made no prediction
    prediction = "modelserve_request_duration_seconds"
    assert value(samples, f"{prediction}_count", model="m", version="1", api="native") == 4
    assert value(samples, f"{prediction}_bucket", model="m", version="2", api="v2", le="0.005") == 1

    assert value(samples, "modelserve_rows_predicted_total", model="m", version="1") == 9
    assert value(samples, "modelserve_rows_predicted_total", model="m", version="2") == 150
    rows = "modelserve_request_rows"
    assert value(samples, f"{rows}_count", model="m", version="1") == 3  # not the refused one
    assert value(samples, f"{rows}_bucket", model="m", version="2", le="100.0") == 0
    assert value(samples, f"{rows}_bucket", model="m", version="2", le="200.0") == 1
