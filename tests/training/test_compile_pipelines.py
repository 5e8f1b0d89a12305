"""Pipelines of standard steps compile, and answer exactly as scikit-learn on typed rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    StandardScaler,
)
from sklearn.svm import SVR

from modelserve.core.compiled import loads
from modelserve.core.compiled.evaluate import Refused, answer
from modelserve.core.compiled.verify import disagreement, stress_columns
from modelserve.core.manifest import FeatureSchema, FeatureSpec
from modelserve.core.predictor import estimator_answers
from modelserve.training.compile import NotCompilable, compile_estimator

NUMS = ["length", "count"]
CATS = ["colour", "size"]
COLOURS = ["red", "green", "blue", "amber"]
SIZES = ["S", "M", "L"]


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    length = rng.normal(10.0, 3.0, n)
    length[::9] = np.nan
    colour = rng.choice(np.array(COLOURS, dtype=object), n)
    colour[::11] = np.nan
    return pd.DataFrame(
        {
            "length": length,
            "count": rng.integers(0, 40, n),
            "colour": colour,
            "size": rng.choice(np.array(SIZES, dtype=object), n),
        }
    )


SCHEMA = FeatureSchema(
    count=4,
    form="frame",
    features=[
        FeatureSpec(name="length", nullable=True, mean=10.0, std=3.0),
        FeatureSpec(name="count", dtype="int64", mean=20.0, std=11.0),
        FeatureSpec(
            name="colour", dtype="string", nullable=True, categories=COLOURS, accepts_unseen=True
        ),
        FeatureSpec(name="size", dtype="string", categories=SIZES),
    ],
)


def _target(X: pd.DataFrame, task: str, classes: int = 2) -> np.ndarray:
    score = np.nan_to_num(X["length"].to_numpy()) + (X["colour"] == "red") * 4 + X["count"] / 10
    if task == "regression":
        return score.to_numpy()
    if classes == 2:
        return (score > 12).to_numpy()
    return np.asarray(["low", "mid", "high"], dtype=object)[np.digitize(score, [11, 14])]


def _columns(X: pd.DataFrame) -> tuple[np.ndarray, ...]:
    out = []
    for feature in SCHEMA.features:
        values = X[feature.name].to_numpy()
        if feature.dtype == "string":
            column = np.empty(len(values), dtype=object)
            column[:] = [v if isinstance(v, str) else np.nan for v in values]
        else:
            column = values.astype(np.float64)
        out.append(column)
    return tuple(out)


def _numbers() -> Pipeline:
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler())


def _mixed(**options: Any) -> ColumnTransformer:
    """Numbers imputed and scaled, categories one-hot encoded (sparse where ``options`` say)."""
    return ColumnTransformer(
        [("num", _numbers(), NUMS), ("cat", OneHotEncoder(handle_unknown="ignore"), CATS)],
        **options,
    )


PIPELINES: dict[str, tuple[Any, str]] = {
    "impute+scale, one-hot -> logistic regression": (
        Pipeline([("prep", _mixed()), ("model", LogisticRegression())]),
        "classification",
    ),
    "impute+scale, sparse one-hot -> logistic regression, three classes": (
        Pipeline([("prep", _mixed(sparse_threshold=1.0)), ("model", LogisticRegression())]),
        "classification",
    ),
    "impute+scale, one-hot -> ridge": (
        Pipeline([("prep", _mixed()), ("model", Ridge(alpha=0.5))]),
        "regression",
    ),
    "impute+scale, sparse one-hot -> lasso": (
        Pipeline([("prep", _mixed(sparse_threshold=1.0)), ("model", Lasso(alpha=0.01))]),
        "regression",
    ),
    "impute+scale, one-hot -> forest": (
        Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            ("num", _numbers(), NUMS),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), CATS),
                        ]
                    ),
                ),
                ("model", RandomForestClassifier(15, random_state=0)),
            ]
        ),
        "classification",
    ),
    "impute+min-max, ordinal -> boosting": (
        Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            ("num", make_pipeline(SimpleImputer(), MinMaxScaler(clip=True)), NUMS),
                            (
                                "cat",
                                OrdinalEncoder(
                                    handle_unknown="use_encoded_value",
                                    unknown_value=-1,
                                    encoded_missing_value=-2,
                                ),
                                CATS,
                            ),
                        ]
                    ),
                ),
                ("model", GradientBoostingRegressor(n_estimators=30)),
            ]
        ),
        "regression",
    ),
    "passthrough, ordinal -> native categories": (
        Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            ("num", "passthrough", NUMS),
                            (
                                "cat",
                                OrdinalEncoder(
                                    handle_unknown="use_encoded_value", unknown_value=np.nan
                                ),
                                CATS,
                            ),
                        ]
                    ),
                ),
                ("model", HistGradientBoostingClassifier(max_iter=20, categorical_features=[2, 3])),
            ]
        ),
        "classification",
    ),
    "most-frequent text, one-hot dropping first, remainder -> extra trees": (
        Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            (
                                "cat",
                                make_pipeline(
                                    SimpleImputer(strategy="most_frequent"),
                                    OneHotEncoder(drop="first", handle_unknown="ignore"),
                                ),
                                CATS,
                            ),
                            (
                                "len",
                                SimpleImputer(strategy="constant", fill_value=-1.0),
                                ["length"],
                            ),
                        ],
                        remainder="passthrough",
                    ),
                ),
                ("model", ExtraTreesRegressor(10, random_state=0)),
            ]
        ),
        "regression",
    ),
    "a scaler after the column transformer -> hist boosting": (
        Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [
                            ("num", "passthrough", NUMS),
                            (
                                "cat",
                                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                CATS,
                            ),
                        ]
                    ),
                ),
                ("scale", StandardScaler()),
                ("model", HistGradientBoostingRegressor(max_iter=20)),
            ]
        ),
        "regression",
    ),
}


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def fitted(request: pytest.FixtureRequest) -> tuple[Any, str]:
    pipeline, task = PIPELINES[request.param]
    X = _frame(400)
    classes = 3 if "three classes" in request.param else 2
    return pipeline.fit(X, _target(X, task, classes)), task


def test_the_pipeline_answers_as_scikit_learn_on_held_out_and_stress_rows(
    fitted: tuple[Any, str],
) -> None:
    pipeline, task = fitted
    form = loads(compile_estimator(pipeline, task, SCHEMA).dumps())
    assert form.columns is not None
    base = _columns(_frame(150, seed=1))
    stress = stress_columns(form, SCHEMA, base, limit=20_000)
    # Every category, an unseen colour and a missing value are among the stress rows.
    assert set(COLOURS) < set(stress[2][~pd.isna(stress[2])])
    assert any(isinstance(v, str) and v not in COLOURS for v in stress[2])
    assert pd.isna(stress[2]).any()
    expected = estimator_answers(pipeline, SCHEMA)
    rows = tuple(np.concatenate([a, b]) for a, b in zip(base, stress, strict=True))
    classifier = task == "classification"
    assert disagreement(form, expected, rows, classifier=classifier) is None
    # One row at a time, as a single request sends it.
    for i in range(0, len(rows[0]), max(1, len(rows[0]) // 20)):
        one = tuple(c[i : i + 1] for c in rows)
        assert disagreement(form, expected, one, classifier=classifier) is None


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_random_typed_rows_answer_as_scikit_learn(
    fitted: tuple[Any, str], data: st.DataObject
) -> None:
    pipeline, task = fitted
    n = data.draw(st.integers(1, 12))
    lengths = data.draw(
        st.lists(st.one_of(st.floats(-1e4, 1e4), st.just(np.nan)), min_size=n, max_size=n)
    )
    counts = data.draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n))
    colours = data.draw(
        st.lists(
            st.one_of(st.sampled_from(COLOURS), st.just("violet"), st.just(np.nan)),
            min_size=n,
            max_size=n,
        )
    )
    sizes = data.draw(st.lists(st.sampled_from(SIZES), min_size=n, max_size=n))
    columns = (
        np.asarray(lengths, dtype=np.float64),
        np.asarray(counts, dtype=np.float64),
        np.asarray(colours, dtype=object),
        np.asarray(sizes, dtype=object),
    )
    form = compile_estimator(pipeline, task, SCHEMA)
    expected = estimator_answers(pipeline, SCHEMA)
    classifier = task == "classification"
    ours, ours_proba = answer(form, columns, probabilities=classifier)
    theirs, theirs_proba = expected(columns, classifier)
    assert np.array_equal(ours, theirs)
    if classifier:
        assert np.array_equal(ours_proba, theirs_proba)


def test_an_unsupported_step_says_which() -> None:
    pipeline = Pipeline(
        [
            ("prep", ColumnTransformer([("num", PolynomialFeatures(), NUMS)])),
            ("model", HistGradientBoostingRegressor(max_iter=5)),
        ]
    )
    X = _frame(100).fillna({"length": 0.0})
    pipeline.fit(X, _target(X, "regression"))
    with pytest.raises(NotCompilable, match="no compiled form for the PolynomialFeatures step"):
        compile_estimator(pipeline, "regression", SCHEMA)


def test_a_pipeline_ending_in_another_model_says_which() -> None:
    pipeline = Pipeline(
        [
            ("prep", ColumnTransformer([("num", _numbers(), NUMS)])),
            ("model", SVR()),
        ]
    )
    X = _frame(100)
    pipeline.fit(X, _target(X, "regression"))
    with pytest.raises(NotCompilable, match="a pipeline that ends in SVR"):
        compile_estimator(pipeline, "regression", SCHEMA)


def test_a_value_beyond_float32_after_preprocessing_is_refused_as_the_forest_fails() -> None:
    pipeline, task = PIPELINES["impute+scale, one-hot -> forest"]
    X = _frame(200)
    pipeline.fit(X, _target(X, task))
    form = compile_estimator(pipeline, task, SCHEMA)
    columns = (
        np.array([10.0, 1e300, 9.0]),
        np.array([3.0, 4.0, 5.0]),
        np.array(["red", "blue", "red"], dtype=object),
        np.array(["S", "M", "L"], dtype=object),
    )
    with pytest.raises(Refused) as caught:
        answer(form, columns, probabilities=True)
    assert caught.value.rows == [1]
    assert caught.value.why == "float32"
    with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
        estimator_answers(pipeline, SCHEMA)(columns, True)
