"""The training report published beside each artifact: a PNG plot and a JSON summary.

Regression: predicted against actual on the held-out rows, with the identity line. Classification:
the confusion matrix of the held-out rows, with counts. ``report.json`` holds the metrics (and the
confusion matrix). Both files are listed with their sha256 in the manifest's ``attachments``, so
they are signed with it and verified whenever the server hands them out.

matplotlib is imported only here, only while training: the server never pays for it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

from modelserve.core.manifest import PLOT_FILE, REPORT_FILES, SUMMARY_FILE, Task


def build_report(
    task: Task,
    title: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metrics: dict[str, float],
    classes: list[Any] | None,
) -> dict[str, bytes]:
    """The report's files by name: ``report.png`` and ``report.json``."""
    summary: dict[str, Any] = {"task": task, "held_out_rows": len(y_true), "metrics": metrics}
    if task == "classification":
        labels = list(classes or np.unique(np.concatenate([y_true, y_pred])).tolist())
        matrix = _confusion(y_true, y_pred, labels)
        summary["confusion_matrix"] = {"labels": labels, "rows_are": "actual", "matrix": matrix}
        plot = _confusion_plot(title, matrix, labels, metrics)
    else:
        plot = _scatter_plot(title, y_true, y_pred, metrics)
    return {PLOT_FILE: plot, SUMMARY_FILE: orjson.dumps(summary, option=orjson.OPT_INDENT_2)}


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for actual, predicted in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        matrix[index[actual], index[predicted]] += 1
    return matrix.tolist()


def _caption(metrics: dict[str, float]) -> str:
    return "   ".join(f"{key} = {value:.4g}" for key, value in metrics.items())


def _figure() -> Any:
    # The object-oriented API needs no display and no global pyplot state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(6, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _scatter_plot(
    title: str, y_true: np.ndarray, y_pred: np.ndarray, metrics: dict[str, float]
) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    axes.scatter(y_true, y_pred, s=12, alpha=0.6, color="tab:blue", label="held-out rows")
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], color="tab:red", linewidth=1, label="predicted = actual")
    axes.set_xlabel("actual")
    axes.set_ylabel("predicted")
    axes.set_title(f"{title}\n{_caption(metrics)}", fontsize=10)
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    return _png(figure)


def _confusion_plot(
    title: str, matrix: list[list[int]], labels: list[Any], metrics: dict[str, float]
) -> bytes:
    figure = _figure()
    axes = figure.add_subplot()
    counts = np.asarray(matrix)
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, label="rows")
    ticks = range(len(labels))
    axes.set_xticks(ticks, [str(label) for label in labels])
    axes.set_yticks(ticks, [str(label) for label in labels])
    threshold = counts.max() / 2 if counts.size else 0
    for i in ticks:
        for j in ticks:
            color = "white" if counts[i, j] > threshold else "black"
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", color=color)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(f"{title}\n{_caption(metrics)}", fontsize=10)
    return _png(figure)


__all__ = ["PLOT_FILE", "REPORT_FILES", "SUMMARY_FILE", "build_report"]
