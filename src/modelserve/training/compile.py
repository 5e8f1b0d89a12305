"""Derive the compiled form of a fitted estimator (see :mod:`modelserve.core.compiled`).

Reads the fitted trees' own arrays — the nodes of each ``sklearn.tree.Tree``, the records of
each hist-gradient-boosting ``TreePredictor`` — and lays them out as one ensemble; or a linear
model's coefficients, with the memory layout in which it multiplies them. Nothing here decides
whether the form is right: :func:`modelserve.core.compiled.verify.disagreement` compares it
with the estimator's own answers before it is published.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from modelserve.core.compiled.form import (
    CATEGORICAL,
    LEAF,
    NAN_LEFT,
    NODE,
    Class,
    CompiledForm,
    Head,
    Layout,
    Linear,
    Trees,
    check_head,
    check_linear,
    check_trees,
)
from modelserve.core.compiled.steps import Program
from modelserve.core.compiled.verify import check, synthetic_columns
from modelserve.core.manifest import COMPILED_FILE, LINEAR_FILE, CompiledInfo, FeatureSchema, Task
from modelserve.core.predictor import estimator_answers, estimator_inputs, linear_attachment


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
_LINEAR_REGRESSORS = {
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
}
_LOGISTIC = "sklearn.linear_model._logistic.LogisticRegression"
_HIST_BOOSTING = {
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
}


def class_path(estimator: Any) -> str:
    return f"{type(estimator).__module__}.{type(estimator).__qualname__}"


def compile_estimator(
    estimator: Any, task: Task, schema: FeatureSchema | None = None
) -> CompiledForm:
    """The compiled form of ``estimator`` (a tree ensemble or a linear model, alone or at the
    end of a ``Pipeline`` of standard steps); raise NotCompilable with the reason if it has none.
    ``schema``: the model's features, which a pipeline's first step takes (and by which the
    memory layout a linear model multiplies is found)."""
    programs: list[Program] | None = None
    model = estimator
    if class_path(estimator) == _PIPELINE:
        if schema is None:
            raise NotCompilable("a pipeline is compiled against its features' schema")
        programs = [Program(i) for i in range(schema.count)]
        for _, step in estimator.steps[:-1]:
            programs = _transform(step, programs, schema.names)
        model = estimator.steps[-1][1]
        if class_path(model) not in _COMPILED:
            raise NotCompilable(
                f"no compiled form for a pipeline that ends in {type(model).__name__}"
            )
    name = class_path(model)
    if name in _HIST_BOOSTING and getattr(model, "_preprocessor", None) is not None:
        # Its categorical features are encoded by its own ColumnTransformer first.
        start = (
            programs if programs is not None else [Program(i) for i in range(model.n_features_in_)]
        )
        programs = _transform(model._preprocessor, start, None)
    form = _model_form(model, task, lambda: _layout(estimator, schema))
    if programs is not None:
        if len(programs) != form.model.n_features:
            raise NotCompilable(
                f"the preprocessing gives {len(programs)} columns, the model takes "
                f"{form.model.n_features}"
            )
        features = schema.count if schema is not None else model.n_features_in_
        form = replace(form, columns=tuple(programs), features=features)
    if isinstance(form.model, Trees):
        check_trees(form.model)
    else:
        check_linear(form.model)
    check_head(form)
    return form


_COMPILED = _FORESTS | _BOOSTING | _HIST_BOOSTING | _LINEAR_REGRESSORS | {_LOGISTIC}


def _model_form(model: Any, task: Task, layout: Callable[[], Layout]) -> CompiledForm:
    """The form of the model itself (a pipeline's last step); ``layout``: how the matrix it
    multiplies lies in memory, for a linear model."""
    name = class_path(model)
    if name in _FORESTS:
        return _forest(model, task)
    if name in _BOOSTING:
        return _boosting(model, task)
    if name in _HIST_BOOSTING:
        return _hist_boosting(model, task)
    if name in _LINEAR_REGRESSORS or name == _LOGISTIC:
        return _linear(model, task, layout())
    raise NotCompilable(f"no compiled form for {type(model).__name__}")


# -- linear models --------------------------------------------------------------------------------


def _linear(model: Any, task: Task, layout: Layout) -> CompiledForm:
    coef = np.asarray(model.coef_)
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(-1)
    if coef.dtype != np.float64:
        raise NotCompilable(f"a linear model with {coef.dtype} coefficients")
    if class_path(model) == _LOGISTIC:
        if task != "classification":
            raise NotCompilable("a LogisticRegression that does not classify")
        classes: tuple[Class, ...] | None = _classes(model)
    elif task != "regression" or coef.ndim != 1:
        raise NotCompilable(f"a {type(model).__name__} with several outputs has no compiled form")
    else:
        classes = None
    linear = Linear(
        coef=np.ascontiguousarray(coef.reshape(-1, coef.shape[-1])),
        intercept=np.ascontiguousarray(intercept),
        vector=coef.ndim == 1,
        fortran_coef=coef.ndim == 2 and coef.shape[0] > 1 and not coef.flags.c_contiguous,
        layout=layout,
    )
    return CompiledForm(model=linear, head=_boosted_head(classes), classes=classes)


def _layout(estimator: Any, schema: FeatureSchema | None) -> Layout:
    """How the matrix a linear model multiplies lies in memory, found by preprocessing a few
    rows as the server gives them (a float64 matrix or a DataFrame) and checking them as the
    model does."""
    from scipy import sparse  # noqa: PLC0415 - scikit-learn has imported it already
    from sklearn.utils import check_array  # noqa: PLC0415

    if schema is None:
        return "C"
    inputs = estimator_inputs(schema, synthetic_columns(schema, 3))
    if class_path(estimator) == _PIPELINE:
        inputs = estimator[:-1].transform(inputs)
    X = check_array(inputs, accept_sparse=["csr", "csc"], dtype=None, ensure_all_finite=False)
    if X.dtype != np.float64:
        raise NotCompilable(f"a linear model given {X.dtype} values")
    if sparse.issparse(X):
        return "sparse"
    return "F" if X.flags.f_contiguous and not X.flags.c_contiguous else "C"


# -- preprocessing steps --------------------------------------------------------------------------


def _transform(step: Any, columns: list[Program], names: list[str] | None) -> list[Program]:
    """The column programs after a fitted preprocessing ``step`` takes ``columns``."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return columns
    path = class_path(step)
    transform = _STEPS.get(path)
    if transform is None:
        raise NotCompilable(f"no compiled form for the {type(step).__name__} step")
    return transform(step, columns, names)


def _column_transformer(
    step: Any, columns: list[Program], names: list[str] | None
) -> list[Program]:
    fitted_names = getattr(step, "feature_names_in_", None)
    if names is not None and fitted_names is not None and list(fitted_names) != names:
        raise NotCompilable("the ColumnTransformer was fitted on other columns than the model's")
    out: list[Program] = []
    for name, transformer, _ in step.transformers_:
        selected = [columns[i] for i in step._transformer_to_input_indices[name]]
        if isinstance(transformer, str) and transformer == "drop":
            continue
        out.extend(_transform(transformer, selected, None))
    width = sum(s.stop - s.start for s in step.output_indices_.values())
    if len(out) != width:
        raise NotCompilable(f"the ColumnTransformer gives {width} columns, not {len(out)}")
    return out


def _pipeline(step: Any, columns: list[Program], names: list[str] | None) -> list[Program]:
    for _, inner in step.steps:
        columns = _transform(inner, columns, names)
        names = None
    return columns


def _imputer(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    if not _is_nan(step.missing_values) or step.add_indicator:
        raise NotCompilable("a SimpleImputer for other missing values, or with indicators")
    statistics = list(np.asarray(step.statistics_).tolist())
    if any(_is_nan(v) for v in statistics):
        raise NotCompilable("a SimpleImputer with a feature that was empty in training")
    return [_then(p, ("impute", v)) for p, v in zip(columns, statistics, strict=True)]


def _standard_scaler(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    means = step.mean_ if step.with_mean else None
    scales = step.scale_ if step.with_std else None
    return [
        _then(
            p,
            (
                "standardize",
                None if means is None else float(means[j]),
                None if scales is None else float(scales[j]),
            ),
        )
        for j, p in enumerate(columns)
    ]


def _min_max_scaler(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    low, high = (float(v) for v in step.feature_range) if step.clip else (None, None)
    return [
        _then(p, ("minmax", float(step.scale_[j]), float(step.min_[j]), low, high))
        for j, p in enumerate(columns)
    ]


def _ordinal_encoder(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    if getattr(step, "_infrequent_enabled", False) or np.dtype(step.dtype) != np.float64:
        raise NotCompilable("an OrdinalEncoder with infrequent categories or integer codes")
    unknown = float(step.unknown_value) if step.handle_unknown == "use_encoded_value" else math.nan
    out: list[Program] = []
    for p, fitted in zip(columns, step.categories_, strict=True):
        categories, has_missing = _categories(fitted)
        missing = float(step.encoded_missing_value) if has_missing else unknown
        out.append(_then(p, ("ordinal", categories, missing, unknown)))
    return out


def _one_hot_encoder(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    if getattr(step, "_infrequent_enabled", False):
        raise NotCompilable("a OneHotEncoder with infrequent categories")
    dropped = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(columns)
    out: list[Program] = []
    for p, fitted, drop in zip(columns, step.categories_, dropped, strict=True):
        categories, has_missing = _categories(fitted)
        positions = list(range(len(categories))) + ([-1] if has_missing else [])
        out.extend(
            _then(p, ("indicator", categories, position))
            for index, position in enumerate(positions)
            if drop is None or index != drop
        )
    return out


def _function_transformer(step: Any, columns: list[Program], _: list[str] | None) -> list[Program]:
    func = step.func
    if func is None:
        return columns  # a ColumnTransformer's "passthrough", once fitted
    if isinstance(func, partial) and getattr(func.func, "__name__", "") == "check_array":
        return columns  # hist gradient boosting's own check of its numeric columns
    raise NotCompilable("no compiled form for a FunctionTransformer")


def _then(program: Program, op: tuple[Any, ...]) -> Program:
    return Program(program.source, (*program.ops, op))


def _categories(fitted: Any) -> tuple[tuple[Any, ...], bool]:
    """An encoder's categories for one column, without the missing value it may end with."""
    values = list(np.asarray(fitted).tolist())
    has_missing = bool(values) and _is_nan(values[-1])
    if has_missing:
        values = values[:-1]
    if not all(isinstance(v, str | int | float | bool) for v in values):
        raise NotCompilable("categories that are not strings or numbers")
    return tuple(values), has_missing


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


_PIPELINE = "sklearn.pipeline.Pipeline"
_STEPS: dict[str, Callable[[Any, list[Program], list[str] | None], list[Program]]] = {
    "sklearn.compose._column_transformer.ColumnTransformer": _column_transformer,
    _PIPELINE: _pipeline,
    "sklearn.impute._base.SimpleImputer": _imputer,
    "sklearn.preprocessing._data.StandardScaler": _standard_scaler,
    "sklearn.preprocessing._data.MinMaxScaler": _min_max_scaler,
    "sklearn.preprocessing._encoders.OrdinalEncoder": _ordinal_encoder,
    "sklearn.preprocessing._encoders.OneHotEncoder": _one_hot_encoder,
    "sklearn.preprocessing._function_transformer.FunctionTransformer": _function_transformer,
}


PUBLISH_STRESS_ROWS = 20_000
"""Most stress rows a form is checked on before it is published."""


def lean_forms(
    estimator: Any, task: Task, schema: FeatureSchema, rows: Any
) -> tuple[dict[str, bytes], CompiledInfo]:
    """The attachments that let a server answer without the estimator (``linear.json``,
    ``compiled.bin``), each checked against it, and the compiled form's check."""
    linear = linear_attachment(estimator, task, schema)
    if linear:
        return linear, CompiledInfo(verified=False, reason=f"served by its {LINEAR_FILE}")
    compiled, info = compiled_attachment(estimator, task, schema, rows)
    return compiled, info


def compiled_attachment(
    estimator: Any, task: Task, schema: FeatureSchema, rows: Any
) -> tuple[dict[str, bytes], CompiledInfo]:
    """``({"compiled.bin": ...}, its check)`` when ``estimator`` has a compiled form that gives
    exactly its answers on ``rows`` (held-out data, or the import's sample; None for none) and on
    stress rows; otherwise ``({}, why not)``."""
    try:
        form = compile_estimator(estimator, task, schema)
    except NotCompilable as exc:
        return {}, CompiledInfo(verified=False, reason=str(exc))
    base = None if rows is None or len(rows) == 0 else _columns(rows, schema)
    reason, checked = check(
        form,
        schema,
        estimator_answers(estimator, schema),
        classifier=task == "classification",
        base=base,
        limit=PUBLISH_STRESS_ROWS,
    )
    if reason is not None:
        return {}, CompiledInfo(verified=False, reason=reason, rows_checked=checked)
    return {COMPILED_FILE: form.dumps()}, CompiledInfo(verified=True, rows_checked=checked)


def _columns(rows: Any, schema: FeatureSchema) -> tuple[np.ndarray, ...]:
    """Rows (a matrix, or a DataFrame) as a checked batch's columns: numbers as float64, text
    as objects, a missing value as NaN."""
    columns = []
    for i, feature in enumerate(schema.features):
        values = rows[feature.name].to_numpy() if hasattr(rows, "iloc") else np.asarray(rows)[:, i]
        if feature.dtype == "string":
            column = np.empty(len(values), dtype=object)
            column[:] = [v if isinstance(v, str) else math.nan for v in values]
        else:
            column = np.asarray(
                [math.nan if v is None else v for v in values.tolist()], dtype=np.float64
            )
        columns.append(column)
    return tuple(columns)


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
        model=_join(parts, forest.n_features_in_, width, float32_input=True, average=True),
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
        model=_join(
            parts,
            model.n_features_in_,
            start.shape[1],
            float32_input=True,
            average=False,
            init=np.asarray(start[0], dtype=np.float64),
            takes_missing=False,  # its predict refuses NaN
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
        model=_join(
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
    takes_missing: bool = True,
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
        takes_missing=takes_missing,
    )


def _classes(model: Any) -> tuple[Class, ...]:
    classes = tuple(np.asarray(model.classes_).tolist())
    if not all(isinstance(c, str | int | float | bool) for c in classes):
        raise NotCompilable("class labels that are not strings or numbers")
    return classes


def _boosted_head(classes: tuple[Class, ...] | None) -> Head:
    """One score, one logit (two classes) or one score per class: a boosted or linear model."""
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
