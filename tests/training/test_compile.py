"""Compiled forms answer exactly as their estimators: random rows, thresholds, missing values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.svm import SVR

from modelserve.core.compiled import loads
from modelserve.core.compiled.evaluate import answer
from modelserve.core.compiled.form import LEAF
from modelserve.core.compiled.verify import disagreement, stress_columns
from modelserve.core.manifest import COMPILED_FILE, FeatureSchema, FeatureSpec
from modelserve.core.predictor import estimator_answers
from modelserve.training.compile import NotCompilable, compile_estimator, compiled_attachment

FEATURES = 5


def _data(task: str, classes: int = 2, missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if task == "regression":
        X, y = make_regression(n_samples=300, n_features=FEATURES, noise=1.0, random_state=0)
    else:
        X, y = make_classification(
            n_samples=300,
            n_features=FEATURES,
            n_informative=3,
            n_classes=classes,
            random_state=0,
        )
    if missing:
        X = X.copy()
        X[::6, 1] = np.nan
    return X, y


CASES: dict[str, tuple[Any, str, int, bool]] = {
    "random forest": (RandomForestRegressor(12, random_state=0), "regression", 0, True),
    "extra trees": (ExtraTreesRegressor(12, random_state=0), "regression", 0, True),
    "best-first forest": (
        RandomForestRegressor(8, max_leaf_nodes=20, random_state=0),
        "regression",
        0,
        True,
    ),
    "gradient boosting": (GradientBoostingRegressor(n_estimators=25), "regression", 0, False),
    "hist gradient boosting": (
        HistGradientBoostingRegressor(max_iter=25),
        "regression",
        0,
        True,
    ),
    "forest, 3 classes": (RandomForestClassifier(12, random_state=0), "classification", 3, True),
    "extra trees, 2 classes": (
        ExtraTreesClassifier(12, random_state=0),
        "classification",
        2,
        True,
    ),
    "boosting, 2 classes": (
        GradientBoostingClassifier(n_estimators=20),
        "classification",
        2,
        False,
    ),
    "boosting, 3 classes": (
        GradientBoostingClassifier(n_estimators=10),
        "classification",
        3,
        False,
    ),
    "hist boosting, 2 classes": (
        HistGradientBoostingClassifier(max_iter=20),
        "classification",
        2,
        True,
    ),
    "hist boosting, 3 classes": (
        HistGradientBoostingClassifier(max_iter=10),
        "classification",
        3,
        True,
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request: pytest.FixtureRequest) -> tuple[Any, str, np.ndarray, bool]:
    estimator, task, classes, missing = CASES[request.param]
    X, y = _data(task, classes or 2, missing)
    return estimator.fit(X, y), task, X, missing


def _agree(form: Any, estimator: Any, rows: np.ndarray, task: str) -> None:
    classifier = task == "classification"
    ours, proba = answer(form, rows, probabilities=classifier)
    assert np.array_equal(ours, estimator.predict(rows))
    if classifier:
        assert proba is not None
        assert np.array_equal(proba, estimator.predict_proba(rows))


def test_the_form_answers_as_the_estimator_on_held_out_and_stress_rows(
    fitted: tuple[Any, str, np.ndarray, bool],
) -> None:
    estimator, task, X, missing = fitted
    form = loads(compile_estimator(estimator, task).dumps())
    columns = stress_columns(form, _schema(missing), _columns(X), limit=50_000)
    rows = np.column_stack(columns)
    assert len(rows) > 100
    _agree(form, estimator, np.vstack([X, rows]), task)
    # One row at a time, as a single request sends it.
    for row in rows[:: max(1, len(rows) // 25)]:
        _agree(form, estimator, row[np.newaxis, :], task)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_form_answers_as_the_estimator_on_random_rows(
    fitted: tuple[Any, str, np.ndarray, bool], data: st.DataObject
) -> None:
    estimator, task, _, missing = fitted
    numbers = st.floats(-1e6, 1e6)
    values = st.one_of(numbers, st.just(float("nan"))) if missing else numbers
    rows = data.draw(
        arrays(np.float64, st.tuples(st.integers(1, 40), st.just(FEATURES)), elements=values)
    )
    _agree(loads(compile_estimator(estimator, task).dumps()), estimator, rows, task)


def test_rows_on_every_threshold_are_checked(fitted: tuple[Any, str, np.ndarray, bool]) -> None:
    estimator, task, X, _ = fitted
    form = compile_estimator(estimator, task)
    nodes = form.trees.nodes
    # A split that sends only missing values one way has an infinite threshold: no row holds it.
    splits = nodes[((nodes["flags"] & LEAF) == 0) & np.isfinite(nodes["threshold"])]
    rows = np.column_stack(stress_columns(form, _schema(), _columns(X), limit=1_000_000))
    for node in splits[:: max(1, len(splits) // 50)]:
        assert (rows[:, node["feature"]] == node["threshold"]).any()


def test_a_wrong_threshold_is_found_by_the_check() -> None:
    X, y = _data("regression")
    forest = RandomForestRegressor(5, random_state=0).fit(X, y)
    form = compile_estimator(forest, "regression")
    nodes = form.trees.nodes
    split = int(np.flatnonzero((nodes["flags"] & LEAF) == 0)[0])
    # Trees compare float32(x): moved to the next float32 value, one input now goes left.
    nodes["threshold"][split] = float(np.nextafter(np.float32(nodes["threshold"][split]), np.inf))
    schema = _schema()
    columns = stress_columns(form, schema, _columns(X), limit=100_000)
    reason = disagreement(form, estimator_answers(forest, schema), columns, classifier=False)
    assert reason is not None
    assert "the compiled form disagrees with the estimator" in reason
    assert "rows differ" in reason


def test_an_estimator_without_a_compiled_form_says_why() -> None:
    X, y = _data("regression")
    with pytest.raises(NotCompilable, match="no compiled form for SVR"):
        compile_estimator(SVR().fit(X, y), "regression")
    forest = RandomForestRegressor(3, random_state=0).fit(X, np.c_[y, y])
    with pytest.raises(NotCompilable, match="several outputs"):
        compile_estimator(forest, "regression")


def _schema(missing: bool = False) -> FeatureSchema:
    return FeatureSchema(
        count=FEATURES,
        features=[
            FeatureSpec(name=f"x{i}", mean=0.0, std=1.0, nullable=missing) for i in range(FEATURES)
        ],
    )


def _columns(X: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(X[:, i].copy() for i in range(X.shape[1]))


def test_the_attachment_is_published_only_when_verified() -> None:
    X, y = _data("regression")
    attachments, info = compiled_attachment(
        GradientBoostingRegressor(n_estimators=10).fit(X, y), "regression", _schema(), X
    )
    assert set(attachments) == {COMPILED_FILE}
    assert info.verified
    assert info.reason is None
    assert info.rows_checked > len(X)


def test_no_attachment_for_an_estimator_without_a_form() -> None:
    X, y = _data("regression")
    attachments, info = compiled_attachment(SVR().fit(X, y), "regression", _schema(), X)
    assert attachments == {}
    assert not info.verified
    assert info.reason == "no compiled form for SVR"
