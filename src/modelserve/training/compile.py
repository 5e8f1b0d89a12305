"""Derive the compiled form of a fitted estimator (see :mod:`modelserve.core.compiled`).

Reads the fitted trees' own arrays — the nodes of each ``sklearn.tree.Tree``, the records of
each hist-gradient-boosting ``TreePredictor`` — and lays them out as one ensemble. Nothing here
decides whether the form is right: :func:`modelserve.core.compiled.verify.disagreement` compares
it with the estimator's own answers before it is published.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelserve.core.compiled.form import (
    CATEGORICAL,
    LEAF,
    NAN_LEFT,
    NODE,
    Class,
    CompiledForm,
    Trees,
    check_head,
    check_trees,
)
from modelserve.core.compiled.verify import check
from modelserve.core.manifest import COMPILED_FILE, CompiledInfo, FeatureSchema, Task
from modelserve.core.predictor import linear_attachment


class NotCompilable(Exception):  # noqa: N818 - a reason, not a failure: the estimator serves
    """The estimator has no compiled form; the message says why (shown to the user)."""


_FORESTS = {
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
}
_BOOSTING = {
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
}
_HIST_BOOSTING = {
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
}


def class_path(estimator: Any) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


def compile_estimator(estimator: Any, task: Task) -> CompiledForm:
    """The compiled form of ``estimator``; raise NotCompilable with the reason if it has none."""
    name = class_path(estimator)
    if name in _FORESTS:
        form = _forest(estimator, task)
    elif name in _BOOSTING:
        form = _boosting(estimator, task)
    elif name in _HIST_BOOSTING:
        form = _hist_boosting(estimator, task)
    else:
        raise NotCompilable(f"no compiled form for {type(estimator).__name__}")
    check_trees(form.trees)
    check_head(form)
    return form


PUBLISH_STRESS_ROWS = 20_000
"""Most stress rows a form is checked on before it is published."""


def lean_forms(
    estimator: Any, task: Task, schema: FeatureSchema, rows: Any
) -> tuple[dict[str, bytes], CompiledInfo]:
    """The attachments that let a server answer without the estimator (``linear.json``,
    ``compiled.bin``), each checked against it, and the compiled form's check."""
    compiled, info = compiled_attachment(estimator, task, schema, rows)
    return {**linear_attachment(estimator, task, schema), **compiled}, info


def compiled_attachment(
    estimator: Any, task: Task, schema: FeatureSchema, rows: Any
) -> tuple[dict[str, bytes], CompiledInfo]:
    """``({"compiled.bin": ...}, its check)`` when ``estimator`` has a compiled form that gives
    exactly its answers on ``rows`` (held-out data, or the import's sample; None for none) and on
    stress rows; otherwise ``({}, why not)``."""
    if schema.form != "matrix":
        return {}, CompiledInfo(verified=False, reason="pipelines have no compiled form yet")
    try:
        form = compile_estimator(estimator, task)
    except NotCompilable as exc:
        return {}, CompiledInfo(verified=False, reason=str(exc))
    base = None if rows is None else np.asarray(rows, dtype=np.float64).reshape(-1, schema.count)
    reason, checked = check(
        form,
        estimator,
        schema,
        classifier=task == "classification",
        base=base if base is not None and len(base) else None,
        limit=PUBLISH_STRESS_ROWS,
    )
    if reason is not None:
        return {}, CompiledInfo(verified=False, reason=reason, rows_checked=checked)
    return {COMPILED_FILE: form.dumps()}, CompiledInfo(verified=True, rows_checked=checked)


# -- decision-tree ensembles ----------------------------------------------------------------------


def _forest(forest: Any, task: Task) -> CompiledForm:
    if forest.n_outputs_ != 1:
        raise NotCompilable("a forest with several outputs has no compiled form")
    classes = _classes(forest) if task == "classification" else None
    width = 1 if classes is None else len(classes)
    parts = []
    for tree in forest.estimators_:
        # A classifier's leaf holds its class fractions: DecisionTreeClassifier.predict_proba.
        value = tree.tree_.value[:, 0, :width]
        parts.append(_decision_tree(tree.tree_, value, column=0, nan_aware=True))
    return CompiledForm(
        trees=_join(parts, forest.n_features_in_, width, float32_input=True, average=True),
        head="value" if classes is None else "proba",
        classes=classes,
    )


def _boosting(model: Any, task: Task) -> CompiledForm:
    init = model.init_
    if not (init == "zero" or class_path(init).startswith("sklearn.dummy.")):
        raise NotCompilable("gradient boosting with its own init estimator has no compiled form")
    start = model._raw_predict_init(np.zeros((2, model.n_features_in_), dtype=np.float32))
    if not np.array_equal(start[0], start[1]):
        raise NotCompilable("gradient boosting whose start depends on the row")
    classes = _classes(model) if task == "classification" else None
    if classes is not None and model.loss != "log_loss":
        raise NotCompilable(f"gradient boosting with loss={model.loss!r} has no compiled form")
    parts = [
        _decision_tree(
            stage[k].tree_,
            (model.learning_rate * stage[k].tree_.value[:, 0, 0])[:, np.newaxis],
            column=k,
            nan_aware=False,  # predict_stages compares only: NaN goes right
        )
        for stage in model.estimators_
        for k in range(len(stage))
    ]
    return CompiledForm(
        trees=_join(
            parts,
            model.n_features_in_,
            start.shape[1],
            float32_input=True,
            average=False,
            init=np.asarray(start[0], dtype=np.float64),
        ),
        head=_boosted_head(classes),
        classes=classes,
        zero_is_positive=True,
    )


def _decision_tree(tree: Any, value: np.ndarray, *, column: int, nan_aware: bool) -> _Tree:
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    nodes = np.zeros(tree.node_count, dtype=NODE)
    leaf = left == -1
    nodes["threshold"] = np.where(leaf, 0.0, tree.threshold)
    nodes["feature"] = np.where(leaf, 0, tree.feature)
    flags = np.where(leaf, LEAF, 0)
    if nan_aware:
        flags |= np.where(~leaf & (np.asarray(tree.missing_go_to_left) != 0), NAN_LEFT, 0)
    nodes["flags"] = flags
    return _Tree(nodes, left, right, np.ascontiguousarray(value, dtype=np.float64), column)


# -- hist gradient boosting -----------------------------------------------------------------------


def _hist_boosting(model: Any, task: Task) -> CompiledForm:
    if getattr(model, "_preprocessor", None) is not None:
        raise NotCompilable(
            "hist gradient boosting that encodes pandas categories itself has no compiled form"
        )
    classes = _classes(model) if task == "classification" else None
    link = type(model._loss.link).__name__
    expected = "IdentityLink" if classes is None else ("LogitLink", "MultinomialLogit")
    if link not in expected:
        raise NotCompilable(f"hist gradient boosting with loss={model.loss!r} has no compiled form")
    known, feature_sets = model._bin_mapper.make_known_categories_bitsets()
    parts: list[_Tree] = []
    left_sets: list[np.ndarray] = []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            records = predictor.nodes
            leaf = records["is_leaf"] != 0
            categorical = ~leaf & (records["is_categorical"] != 0)
            nodes = np.zeros(len(records), dtype=NODE)
            nodes["threshold"] = np.where(leaf | categorical, 0.0, records["num_threshold"])
            nodes["feature"] = np.where(leaf, 0, records["feature_idx"])
            nodes["flags"] = (
                np.where(leaf, LEAF, 0)
                | np.where(~leaf & (records["missing_go_to_left"] != 0), NAN_LEFT, 0)
                | np.where(categorical, CATEGORICAL, 0)
            )
            refs = np.zeros((len(records), 2), dtype=np.int32)
            offset = sum(len(s) for s in left_sets)
            refs[categorical, 0] = offset + records["bitset_idx"][categorical]
            refs[categorical, 1] = feature_sets[records["feature_idx"][categorical]]
            left_sets.append(np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32))
            parts.append(
                _Tree(
                    nodes,
                    np.where(leaf, -1, records["left"].astype(np.int64)),
                    np.where(leaf, -1, records["right"].astype(np.int64)),
                    records["value"].astype(np.float64)[:, np.newaxis],
                    k,
                    refs,
                )
            )
    n_left = sum(len(s) for s in left_sets)
    for part in parts:
        part.refs[:, 1] += n_left  # the known sets come after every tree's left sets
    sets = np.concatenate([*left_sets, np.asarray(known, dtype=np.uint32).reshape(-1, 8)])
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1)
    return CompiledForm(
        trees=_join(
            parts,
            model.n_features_in_,
            len(baseline),
            float32_input=False,
            average=False,
            init=baseline,
            sets=sets.reshape(-1, 8),
        ),
        head="value" if classes is None else _boosted_head(classes),
        classes=classes,
        zero_is_positive=False,
        fortran_scores=True,
    )


# -- shared ----------------------------------------------------------------------------------------


class _Tree:
    """One tree before layout: nodes in the estimator's order, with both children's ids."""

    def __init__(
        self,
        nodes: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        values: np.ndarray,
        column: int,
        refs: np.ndarray | None = None,
    ) -> None:
        self.nodes = nodes
        self.left = left
        self.right = right
        self.values = values
        self.column = column
        self.refs = refs if refs is not None else np.zeros((len(nodes), 2), dtype=np.int32)


def _depth_first(tree: _Tree, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tree's nodes, values and refs reordered so that a split's left child follows it."""
    left, right = tree.left, tree.right
    count = len(tree.nodes)
    split = left != -1
    if (left[split] == np.flatnonzero(split) + 1).all():
        order = np.arange(count)
    else:
        order_list: list[int] = []
        stack = [0]
        while stack:
            k = stack.pop()
            order_list.append(k)
            if left[k] != -1:
                stack.append(int(right[k]))
                stack.append(int(left[k]))
        order = np.asarray(order_list, dtype=np.int64)
    position = np.full(count, -1, dtype=np.int64)
    position[order] = np.arange(len(order))
    nodes = tree.nodes[order].copy()
    moved_right = right[order]
    nodes["right"] = np.where(moved_right == -1, 0, position[moved_right] + offset)
    return nodes, tree.values[order], tree.refs[order]


def _join(
    parts: list[_Tree],
    n_features: int,
    n_outputs: int,
    *,
    float32_input: bool,
    average: bool,
    init: np.ndarray | None = None,
    sets: np.ndarray | None = None,
) -> Trees:
    nodes, values, refs, roots = [], [], [], []
    offset = 0
    for part in parts:
        n, v, r = _depth_first(part, offset)
        roots.append(offset)
        nodes.append(n)
        values.append(v)
        refs.append(r)
        offset += len(n)
    return Trees(
        nodes=np.concatenate(nodes),
        roots=np.asarray(roots, dtype=np.int32),
        columns=np.asarray([p.column for p in parts], dtype=np.int32),
        values=np.ascontiguousarray(np.concatenate(values)),
        category_sets=sets if sets is not None else np.zeros((0, 8), dtype=np.uint32),
        category_refs=np.concatenate(refs).astype(np.int32),
        init=init if init is not None else np.zeros(n_outputs),
        n_features=n_features,
        float32_input=float32_input,
        average=average,
    )


def _classes(model: Any) -> tuple[Class, ...]:
    classes = tuple(np.asarray(model.classes_).tolist())
    if not all(isinstance(c, str | int | float | bool) for c in classes):
        raise NotCompilable("class labels that are not strings or numbers")
    return classes


def _boosted_head(classes: tuple[Class, ...] | None) -> Any:
    if classes is None:
        return "value"
    return "logit" if len(classes) == 2 else "softmax"


__all__ = [
    "PUBLISH_STRESS_ROWS",
    "NotCompilable",
    "class_path",
    "compile_estimator",
    "compiled_attachment",
    "lean_forms",
]
