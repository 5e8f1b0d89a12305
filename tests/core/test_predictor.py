from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelserve.core.batch import Batch
from modelserve.core.errors import InvalidInputError, UnsupportedOutputError
from modelserve.core.predictor import Predictor, linear_attachment
from modelserve.core.store import LoadPolicy, ModelStore
from tests.helpers import ROW


@pytest.fixture(scope="module")
def predictor(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("default", None, LoadPolicy())
    return Predictor(artifact, max_rows=5, max_problems=3)


@pytest.fixture(scope="module")
def classifier(template_store) -> Predictor:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("clf", None, LoadPolicy())
    return Predictor(artifact, max_rows=5)


def test_predict_equals_the_estimators_own_predict(predictor: Predictor) -> None:
    rows = [ROW, [0.0] * 10]
    result = predictor.predict(rows)
    expected = predictor.estimator.predict(np.array(rows))
    np.testing.assert_allclose(result.predictions, expected, rtol=0, atol=1e-9)
    assert result.probabilities is None


def test_rows_as_objects_are_put_in_manifest_order(predictor: Predictor) -> None:
    names = predictor.feature_names
    shuffled = dict(reversed(list(zip(names, ROW, strict=True))))
    by_object = predictor.predict([shuffled]).predictions
    by_array = predictor.predict([ROW]).predictions
    assert by_object.tolist() == by_array.tolist()


def test_numpy_input_is_validated_too(predictor: Predictor) -> None:
    result = predictor.predict(np.array([ROW]))
    assert result.predictions.shape == (1,)
    with pytest.raises(InvalidInputError) as info:
        predictor.predict(np.array([[math.nan] * 10]))
    assert info.value.code == "not-finite"


def test_classifier_returns_labels_and_probabilities(classifier: Predictor) -> None:
    result = classifier.predict([[0.1, 0.2, 0.3, 0.4]], return_probabilities=True)
    assert result.classes == [0, 1]
    assert result.probabilities is not None
    assert result.probabilities.shape == (1, 2)
    assert result.probabilities.sum() == pytest.approx(1.0)
    assert result.predictions[0] in (0, 1)


def test_probabilities_from_a_regressor_are_refused(predictor: Predictor) -> None:
    with pytest.raises(UnsupportedOutputError, match="is a regressor"):
        predictor.predict([ROW], return_probabilities=True)


def test_python_rows_that_are_not_a_list_are_refused(predictor: Predictor) -> None:
    with pytest.raises(InvalidInputError) as info:
        predictor.predict("rows")
    assert info.value.code == "list-type"
    assert info.value.message == "instances must be a list of rows or a 2-D array, not str"


def test_only_a_checked_batch_is_predicted(predictor: Predictor) -> None:
    unchecked = Batch.of_matrix(np.array([ROW]))
    with pytest.raises(ValueError, match="only a checked batch"):
        predictor.predict_batch(unchecked)
    assert predictor.predict_batch(predictor.check(unchecked)).predictions.shape == (1,)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@settings(max_examples=50, deadline=None)
@given(rows=arrays(np.float64, st.tuples(st.integers(1, 5), st.just(10)), elements=finite))
def test_any_finite_batch_predicts_like_the_estimator(
    predictor: Predictor, rows: np.ndarray
) -> None:
    result = predictor.predict(rows.tolist())
    np.testing.assert_allclose(result.predictions, predictor.estimator.predict(rows), atol=1e-9)


def test_linear_models_use_the_verified_lean_path(predictor: Predictor) -> None:
    assert not predictor.batchable  # the lean path, which merging would only slow down
    rows = np.random.default_rng(3).normal(scale=5, size=(5, 10))
    np.testing.assert_allclose(
        predictor.predict(rows).predictions, predictor.estimator.predict(rows), rtol=0, atol=1e-9
    )


def test_the_lean_path_is_not_used_when_it_disagrees(template_store) -> None:  # type: ignore[no-untyped-def]
    artifact = ModelStore(template_store).load("default", None, LoadPolicy())
    estimator = artifact.estimator
    original = estimator.predict
    estimator.predict = lambda X: original(X) + 1e-6  # an estimator whose math is not X @ coef + b
    manifest = artifact.manifest
    assert linear_attachment(estimator, manifest.task, manifest.input_schema) == {}
    assert Predictor(artifact, max_rows=5).batchable


def test_non_linear_models_keep_their_own_predict(classifier: Predictor) -> None:
    assert classifier.batchable
