"""Reading ``compiled.bin``: a form round-trips, and a malformed or hostile one is refused."""

from __future__ import annotations

import struct
from dataclasses import replace

import numpy as np
import orjson
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from modelserve.core.compiled import CompiledFormError, loads
from modelserve.core.compiled.form import LEAF, MAGIC, CompiledForm, Linear
from modelserve.training.compile import compile_estimator


@pytest.fixture(scope="module")
def forest() -> CompiledForm:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] * 2 + X[:, 1]
    return compile_estimator(
        RandomForestRegressor(n_estimators=3, max_depth=4, random_state=0).fit(X, y),
        "regression",
    )


def _parts(data: bytes) -> tuple[dict[str, object], bytes]:
    (size,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return orjson.loads(data[start : start + size]), data[start + size :]


def _pack(header: dict[str, object], body: bytes) -> bytes:
    text = orjson.dumps(header)
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % 8)
    return MAGIC + struct.pack("<I", len(text)) + text + body


def _edited(form: CompiledForm, **arrays: np.ndarray) -> bytes:
    """The form's bytes with some of its tree arrays replaced."""
    trees = form.trees
    fields = {**trees.arrays(), **arrays}
    edited = CompiledForm(
        model=type(trees)(
            **fields,
            n_features=trees.n_features,
            float32_input=trees.float32_input,
            average=trees.average,
        ),
        head=form.head,
        classes=form.classes,
    )
    return edited.dumps()


def test_a_form_reads_back_as_it_was_written(forest: CompiledForm) -> None:
    again = loads(forest.dumps())
    assert again.head == "value"
    assert again.trees.n_features == 3
    assert again.trees.float32_input
    assert again.trees.average
    for name in ("nodes", "roots", "columns", "values", "category_refs", "init"):
        assert np.array_equal(getattr(again.trees, name), getattr(forest.trees, name)), name


def test_a_classifier_form_keeps_its_classes_and_head() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = np.where(X[:, 0] > 0, "yes", "no")
    form = compile_estimator(GradientBoostingClassifier(n_estimators=5).fit(X, y), "classification")
    again = loads(form.dumps())
    assert again.head == "logit"
    assert again.classes == ("no", "yes")
    assert again.zero_is_positive


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a compiled form"),
        (b"PK\x03\x04" + b"\0" * 20, "not a compiled form"),
        (MAGIC + struct.pack("<I", 1 << 30), "header runs past the end"),
        (MAGIC + struct.pack("<I", 3) + b"{x}", "header is not JSON"),
    ],
)
def test_bytes_that_are_not_a_form_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CompiledFormError, match=message):
        loads(data)


def test_an_array_past_the_end_of_the_file_is_refused(forest: CompiledForm) -> None:
    header, body = _parts(forest.dumps())
    header["arrays"]["values"]["shape"] = [10**9, 1]  # type: ignore[index]
    with pytest.raises(CompiledFormError, match="values lies outside the file"):
        loads(_pack(header, body))


def test_a_header_missing_a_field_is_refused(forest: CompiledForm) -> None:
    header, body = _parts(forest.dumps())
    del header["zero_is_positive"]
    with pytest.raises(CompiledFormError, match="malformed header: KeyError"):
        loads(_pack(header, body))


def test_a_form_holds_trees_or_a_linear_model_not_both_nor_neither(forest: CompiledForm) -> None:
    header, body = _parts(forest.dumps())
    header["linear"] = {"vector": True, "fortran_coef": False, "layout": "C"}
    with pytest.raises(CompiledFormError, match="either trees or a linear model"):
        loads(_pack(header, body))
    del header["linear"], header["trees"]
    with pytest.raises(CompiledFormError, match="either trees or a linear model"):
        loads(_pack(header, body))


@pytest.fixture(scope="module")
def logistic() -> CompiledForm:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(150, 4))
    y = np.digitize(X[:, 0] + X[:, 1], [-0.5, 0.5])
    return compile_estimator(LogisticRegression().fit(X, y), "classification")


def test_a_linear_form_reads_back_as_it_was_written(logistic: CompiledForm) -> None:
    again = loads(logistic.dumps())
    assert isinstance(again.model, Linear)
    assert isinstance(logistic.model, Linear)
    assert again.head == "softmax"
    assert again.classes == (0, 1, 2)
    assert np.array_equal(again.model.coef, logistic.model.coef)
    assert np.array_equal(again.model.intercept, logistic.model.intercept)
    assert again.model.fortran_coef == logistic.model.fortran_coef
    assert again.model.layout == "C"


def _linear_edited(form: CompiledForm, **changes: object) -> bytes:
    assert isinstance(form.model, Linear)
    return CompiledForm(
        model=replace(form.model, **changes), head=form.head, classes=form.classes
    ).dumps()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"coef": np.array([[np.inf, 0.0, 0.0, 0.0]] * 3)}, "coefficient or intercept is not a"),
        ({"intercept": np.array([0.0, np.nan, 0.0])}, "coefficient or intercept is not a"),
        ({"intercept": np.zeros(2)}, "2 intercepts for 3 outputs"),
        ({"coef": np.zeros((3, 0))}, "a linear model of 3 outputs over 0 features"),
        ({"vector": True}, "one coefficient vector has one output"),
    ],
)
def test_a_malformed_linear_model_is_refused(
    logistic: CompiledForm, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(CompiledFormError, match=message):
        loads(_linear_edited(logistic, **changes))


def test_an_unknown_layout_is_refused(logistic: CompiledForm) -> None:
    header, body = _parts(logistic.dumps())
    header["linear"]["layout"] = "diagonal"  # type: ignore[index]
    with pytest.raises(CompiledFormError, match="unknown layout 'diagonal'"):
        loads(_pack(header, body))


def test_a_coefficient_vector_answers_only_a_value() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 2))
    form = compile_estimator(Ridge().fit(X, X[:, 0]), "regression")
    assert isinstance(form.model, Linear)
    header, body = _parts(form.dumps())
    header["head"], header["classes"] = "logit", [0, 1]
    with pytest.raises(CompiledFormError, match="one coefficient vector answers a value"):
        loads(_pack(header, body))


def test_an_unknown_head_is_refused(forest: CompiledForm) -> None:
    header, body = _parts(forest.dumps())
    header["head"] = "exec"
    with pytest.raises(CompiledFormError, match="unknown head 'exec'"):
        loads(_pack(header, body))


def test_a_child_that_points_back_is_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    split = int(np.flatnonzero((nodes["flags"] & LEAF) == 0)[1])
    nodes["right"][split] = 0  # a loop back to the root
    with pytest.raises(CompiledFormError, match="children must lie after it"):
        loads(_edited(forest, nodes=nodes))


def test_a_child_in_another_tree_is_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    nodes["right"][0] = len(nodes) - 1  # the last node belongs to the last tree
    with pytest.raises(CompiledFormError, match="inside its own tree"):
        loads(_edited(forest, nodes=nodes))


def test_a_split_on_a_feature_the_model_does_not_take_is_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    nodes["feature"][0] = 3
    with pytest.raises(CompiledFormError, match="names a feature the model does not take"):
        loads(_edited(forest, nodes=nodes))


def test_a_tree_that_ends_in_a_split_is_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    nodes["flags"][-1] = 0
    nodes["right"][-1] = len(nodes)
    with pytest.raises(CompiledFormError, match="children must lie after it, inside its own tree"):
        loads(_edited(forest, nodes=nodes))


def test_roots_out_of_order_are_refused(forest: CompiledForm) -> None:
    roots = forest.trees.roots[::-1].copy()
    with pytest.raises(CompiledFormError, match="trees must start at node 0"):
        loads(_edited(forest, roots=roots))


def test_a_leaf_value_that_is_not_a_number_is_refused(forest: CompiledForm) -> None:
    values = forest.trees.values.copy()
    leaf = int(np.flatnonzero(forest.trees.nodes["flags"] & LEAF)[0])
    values[leaf, 0] = np.nan
    with pytest.raises(CompiledFormError, match="leaf value is not a finite number"):
        loads(_edited(forest, values=values))


def test_an_output_column_the_model_lacks_is_refused(forest: CompiledForm) -> None:
    columns = forest.trees.columns + 1
    with pytest.raises(CompiledFormError, match="output column the model does not have"):
        loads(_edited(forest, columns=columns))


def test_unknown_node_flags_are_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    nodes["flags"][0] |= 64
    with pytest.raises(CompiledFormError, match="unknown flags"):
        loads(_edited(forest, nodes=nodes))


def test_a_categorical_split_without_its_sets_is_refused(forest: CompiledForm) -> None:
    nodes = forest.trees.nodes.copy()
    nodes["flags"][0] |= 4
    with pytest.raises(CompiledFormError, match="category set that does not exist"):
        loads(_edited(forest, nodes=nodes))
