"""The training report: a PNG and a JSON summary published with each trained version."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelserve.core.errors import PublishError
from modelserve.core.settings import Settings
from modelserve.core.store import ManifestDraft, ModelStore
from modelserve.http.app import create_app
from modelserve.training.train import TrainConfig, train
from tests.helpers import assert_problem

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(content: bytes) -> tuple[int, int]:
    assert content.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def test_training_publishes_a_plot_and_a_summary_listed_in_the_manifest(tmp_path: Path) -> None:
    result = train(TrainConfig(samples=200), ModelStore(tmp_path))
    plot = (result.path / "report.png").read_bytes()
    summary = json.loads((result.path / "report.json").read_text())
    assert png_size(plot) == (600, 500)
    assert result.manifest.attachments == {
        "report.json": hashlib.sha256((result.path / "report.json").read_bytes()).hexdigest(),
        "report.png": hashlib.sha256(plot).hexdigest(),
        # the default model is linear: its coefficients are published too (tests/test_store.py)
        "linear.json": hashlib.sha256((result.path / "linear.json").read_bytes()).hexdigest(),
    }
    assert summary["task"] == "regression"
    assert summary["metrics"] == result.manifest.metrics
    assert summary["held_out_rows"] == result.manifest.training_data.n_test


def test_a_classifiers_report_holds_its_confusion_matrix(tmp_path: Path) -> None:
    config = TrainConfig(estimator="logistic-regression", samples=300, features=4)
    result = train(config, ModelStore(tmp_path))
    summary = json.loads((result.path / "report.json").read_text())
    confusion = summary["confusion_matrix"]
    assert confusion["labels"] == result.manifest.output.classes
    matrix = confusion["matrix"]
    held_out = sum(map(sum, matrix))
    assert held_out == result.manifest.training_data.n_test
    correct = sum(matrix[i][i] for i in range(len(matrix)))
    assert correct / held_out == pytest.approx(result.manifest.metrics["accuracy"])
    assert png_size((result.path / "report.png").read_bytes()) == (600, 500)


def test_model_detail_links_to_the_report_and_the_links_serve_it(
    client: TestClient, store_path: Path
) -> None:
    detail = client.get("/v1/models/default").json()
    links = detail["versions"][0]["report"]
    assert links == {
        "plot": "/v1/models/default/versions/1/report.png",
        "summary": "/v1/models/default/versions/1/report.json",
    }
    plot = client.get(links["plot"])
    assert plot.status_code == 200
    assert plot.headers["content-type"] == "image/png"
    assert plot.content == (store_path / "default" / "1" / "report.png").read_bytes()
    summary = client.get(links["summary"])
    assert summary.status_code == 200
    assert summary.json()["metrics"] == detail["manifest"]["metrics"]


def test_a_tampered_report_is_refused_not_served(client: TestClient, store_path: Path) -> None:
    (store_path / "default" / "1" / "report.png").write_bytes(PNG_SIGNATURE + b"tampered")
    assert_problem(
        client.get("/v1/models/default/versions/1/report.png"),
        503,
        "integrity-check-failed",
        detail_contains="report.png does not match its sha256",
    )
    (store_path / "default" / "1" / "report.json").unlink()
    assert_problem(
        client.get("/v1/models/default/versions/1/report.json"),
        503,
        "integrity-check-failed",
        detail_contains="cannot read report.json",
    )


def test_report_of_an_unknown_version_or_model_is_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/models/default/versions/9/report.png"), 404, "version-not-found")
    assert_problem(client.get("/v1/models/nope/versions/1/report.png"), 404, "model-not-found")


def test_a_version_published_without_a_report_says_so(store_path: Path, settings: Settings) -> None:
    manifest_path = store_path / "default" / "1" / "manifest.json"
    document = json.loads(manifest_path.read_text())
    del document["attachments"]  # as manifests written before reports existed
    manifest_path.write_text(json.dumps(document))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models/default").json()["versions"][0]["report"] is None
        assert_problem(
            client.get("/v1/models/default/versions/1/report.png"),
            404,
            "attachment-not-found",
            detail_contains="default v1 has no report.png",
        )


@pytest.mark.parametrize("file_name", ["manifest.json", "model.skops", "../escape", ".hidden"])
def test_attachments_cannot_take_reserved_or_unsafe_names(tmp_path: Path, file_name: str) -> None:
    store = ModelStore(tmp_path)
    manifest = train(TrainConfig(samples=50), store).manifest
    draft_fields = manifest.model_dump(
        include={
            "runtime", "estimator", "task", "input_schema", "output", "metrics", "training_data"
        }
    )  # fmt: skip
    with pytest.raises(PublishError, match="cannot be an attachment's file name"):
        store.publish(
            "default", b"x", "skops", ManifestDraft(**draft_fields), None, {file_name: b"x"}
        )
    assert store.list_versions("default") == [1]
