"""Linear models compile, alone or after standard steps, and multiply as scikit-learn does.

A matrix product sums in the order its BLAS call (or SciPy's sparse product) takes, and that
order depends on the memory layout of both operands and on the number of rows. So the form
keeps the estimator's layout, and the check compares answers in batches of many sizes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelserve.core.compiled import loads
from modelserve.core.compiled.evaluate import Refused, answer
from modelserve.core.compiled.form import CompiledForm, Linear
from modelserve.core.compiled.verify import check
from modelserve.core.manifest import COMPILED_FILE, LINEAR_FILE, FeatureSchema, FeatureSpec
from modelserve.core.predictor import estimator_answers
from modelserve.training.compile import NotCompilable, compile_estimator, lean_forms

FEATURES = 17
NAMES = [f"x{i}" for i in range(FEATURES)]


def _data(seed: int = 0, rows: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, FEATURES)) * rng.uniform(0.1, 1000.0, FEATURES)


def _schema(form: str = "matrix", missing: bool = False) -> FeatureSchema:
    X = _data()
    return FeatureSchema(
        count=FEATURES,
        form=form,  # type: ignore[arg-type]
        features=[
            FeatureSpec(
                name=n, mean=float(X[:, i].mean()), std=float(X[:, i].std()), nullable=missing
            )
            for i, n in enumerate(NAMES)
        ],
    )


def _target(X: np.ndarray, classes: int) -> np.ndarray:
    score = np.nan_to_num(X) @ np.linspace(-1.0, 1.0, FEATURES) / 1000
    if classes == 0:
        return score
    return np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))


CASES: dict[str, tuple[Any, int]] = {
    "linear regression": (LinearRegression(), 0),
    "ridge": (Ridge(alpha=2.0), 0),
    "lasso": (Lasso(alpha=0.5), 0),
    "elastic net": (ElasticNet(alpha=0.5), 0),
    "logistic regression, 2 classes": (LogisticRegression(max_iter=2000), 2),
    "logistic regression, 3 classes": (LogisticRegression(max_iter=2000), 3),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request: pytest.FixtureRequest) -> tuple[Any, str]:
    estimator, classes = CASES[request.param]
    X = _data()
    return estimator.fit(X, _target(X, classes)), "classification" if classes else "regression"


def _agree(form: CompiledForm, estimator: Any, rows: np.ndarray, classifier: bool) -> None:
    ours, proba = answer(form, rows, probabilities=classifier)
    assert np.array_equal(ours, estimator.predict(rows))
    if classifier:
        assert np.array_equal(proba, estimator.predict_proba(rows))


def test_the_form_answers_as_the_estimator_in_batches_of_every_size(
    fitted: tuple[Any, str],
) -> None:
    estimator, task = fitted
    form = loads(compile_estimator(estimator, task, _schema()).dumps())
    assert isinstance(form.model, Linear)
    rows = _data(seed=1, rows=2_000)
    for size in [*range(1, 40), 64, 100, 255, 256, 1_000, 2_000]:
        for start in (0, 1, 3):
            _agree(form, estimator, rows[start : start + size], task == "classification")


def test_the_check_passes_at_publish_and_load(fitted: tuple[Any, str]) -> None:
    estimator, task = fitted
    schema = _schema()
    form = compile_estimator(estimator, task, schema)
    reason, rows = check(
        form, schema, estimator_answers(estimator, schema), classifier=task == "classification"
    )
    assert reason is None
    assert rows > 256


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_rows_answer_as_the_estimator(fitted: tuple[Any, str], data: st.DataObject) -> None:
    estimator, task = fitted
    rows = data.draw(
        arrays(
            np.float64,
            st.tuples(st.integers(1, 40), st.just(FEATURES)),
            elements=st.floats(-1e6, 1e6),
        )
    )
    _agree(compile_estimator(estimator, task), estimator, rows, task == "classification")


def test_a_coefficient_one_step_off_is_found_by_the_check() -> None:
    X = _data()
    estimator = Ridge().fit(X, _target(X, 0))
    schema = _schema()
    form = compile_estimator(estimator, "regression", schema)
    assert isinstance(form.model, Linear)
    coef = form.model.coef.copy()
    coef[0, 3] = np.nextafter(coef[0, 3], np.inf)
    wrong = replace(form, model=replace(form.model, coef=coef))
    reason, _ = check(wrong, schema, estimator_answers(estimator, schema), classifier=False)
    assert reason is not None
    assert "the compiled form disagrees with the estimator" in reason


def test_the_memory_layout_matters_and_the_check_sees_it() -> None:
    """A three-class logistic regression keeps its coefficients column-ordered; the same
    numbers multiplied row-ordered take another BLAS path and differ in the last bits."""
    X = _data()
    estimator = LogisticRegression(max_iter=2000).fit(X, _target(X, 3))
    schema = _schema()
    form = compile_estimator(estimator, "classification", schema)
    assert isinstance(form.model, Linear)
    assert form.model.fortran_coef
    expected = estimator_answers(estimator, schema)
    assert check(form, schema, expected, classifier=True)[0] is None
    rowwise = replace(form, model=replace(form.model, fortran_coef=False))
    reason, _ = check(rowwise, schema, expected, classifier=True)
    assert reason is not None
    assert "rows differ" in reason


def test_a_frame_model_multiplies_the_column_ordered_matrix_pandas_gives() -> None:
    X = pd.DataFrame(_data(), columns=NAMES)
    X.iloc[::5, 2] = np.nan
    pipeline = make_pipeline(SimpleImputer(), StandardScaler(), LinearRegression())
    pipeline.fit(X, _target(X.to_numpy(), 0))
    schema = _schema("frame", missing=True)
    form = compile_estimator(pipeline, "regression", schema)
    assert isinstance(form.model, Linear)
    assert form.model.layout == "F"
    reason, rows = check(form, schema, estimator_answers(pipeline, schema), classifier=False)
    assert reason is None
    assert rows > 256


def test_a_value_its_scaling_takes_beyond_float64_is_refused_as_the_estimator_fails() -> None:
    X = _data()
    X[:, 5] /= X[:, 5].std() * 10  # scaled by 1/std = 10: the largest number overflows
    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(X, _target(X, 0))
    schema = _schema()
    form = compile_estimator(pipeline, "regression", schema)
    rows = _data(seed=4, rows=3)
    rows[1, 5] = np.finfo(np.float64).max
    with pytest.raises(Refused) as caught:
        answer(form, rows, probabilities=False)
    assert caught.value.rows == [1]
    assert caught.value.why == "finite"
    with pytest.raises(ValueError, match="Input X contains infinity"):
        pipeline.predict(rows)
    # The stress rows hold such values; the check tries that the estimator fails on them too.
    reason, _ = check(form, schema, estimator_answers(pipeline, schema), classifier=False)
    assert reason is None


def test_a_plain_linear_regressor_keeps_its_lean_form() -> None:
    X = _data()
    forms, info = lean_forms(LinearRegression().fit(X, _target(X, 0)), "regression", _schema(), X)
    assert set(forms) == {LINEAR_FILE}
    assert not info.verified
    assert info.reason == f"served by its {LINEAR_FILE}"


def test_a_logistic_regression_is_published_with_a_compiled_form() -> None:
    X = _data()
    estimator = LogisticRegression(max_iter=2000).fit(X, _target(X, 2))
    forms, info = lean_forms(estimator, "classification", _schema(), X)
    assert set(forms) == {COMPILED_FILE}
    assert info.verified
    assert info.rows_checked > len(X)


def test_a_regressor_with_several_outputs_says_why() -> None:
    X = _data()
    y = _target(X, 0)
    with pytest.raises(NotCompilable, match="Ridge with several outputs"):
        compile_estimator(Ridge().fit(X, np.c_[y, y]), "regression")
