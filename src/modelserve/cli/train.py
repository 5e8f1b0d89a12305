"""``modelserve train`` and ``modelserve import``: publish a model to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelserve.cli.common import (
    Format,
    SigningKeyOption,
    StoreOption,
    err,
    fail,
    report,
    settings_from,
    signing_key_of,
    train_with_status,
)
from modelserve.core.errors import ModelServeError
from modelserve.core.registry import open_store
from modelserve.training.importer import import_model
from modelserve.training.train import ESTIMATORS, TrainConfig


def train_command(
    name: Annotated[str, typer.Option(help="Model name in the store.")] = "default",
    estimator: Annotated[str, typer.Option(help=f"Estimator: {', '.join(ESTIMATORS)}.")] = "linear",
    csv: Annotated[
        Path | None,
        typer.Option(
            help="Train on this CSV file (header row; numbers, booleans, text; empty = missing)."
        ),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Target column of --csv.")] = None,
    categorical: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated whole-number columns of --csv to treat as categories "
            "(text and boolean columns always are)."
        ),
    ] = None,
    drop: Annotated[
        str | None, typer.Option(help="Comma-separated columns of --csv to leave out.")
    ] = None,
    samples: Annotated[int, typer.Option(help="Synthetic data: number of rows.")] = 1000,
    features: Annotated[int, typer.Option(help="Synthetic data: number of features.")] = 10,
    noise: Annotated[float, typer.Option(help="Synthetic regression data: noise.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Random seed for data, split and estimator.")] = 42,
    test_size: Annotated[float, typer.Option(help="Held-out fraction for the metrics.")] = 0.2,
    format: Annotated[
        Format, typer.Option(help="Artifact format; pickle needs MODELSERVE_ALLOW_PICKLE to serve.")
    ] = Format.skops,
    signing_key: SigningKeyOption = None,
    store: StoreOption = None,
) -> None:
    """Fit a model and publish it as the next version in the store."""
    settings = settings_from(store=store, signing_key=signing_key)
    config = TrainConfig(
        name=name,
        estimator=estimator,
        samples=samples,
        features=features,
        noise=noise,
        seed=seed,
        test_size=test_size,
        csv=csv,
        target=target,
        format=format.value,
        categorical=_names(categorical),
        drop=_names(drop),
    )
    report(train_with_status(config, settings))
    if format is Format.pickle and not settings.allow_pickle:
        err().print(
            "note: the server loads pickle artifacts only with MODELSERVE_ALLOW_PICKLE=true",
            highlight=False,
        )


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip()) if text else ()


def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A fitted estimator or Pipeline: a .skops file, a pickle or .joblib file "
            "(with --trust-pickle), or an MLflow model directory (sklearn flavor)."
        ),
    ],
    name: Annotated[str, typer.Option(help="Model name in the store.")],
    sample: Annotated[
        Path | None,
        typer.Option(
            help="A CSV or Parquet file of rows the model takes (other columns are ignored): "
            "gives the features' types, statistics and categories, and the model is tried on it."
        ),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle", help="Unpickle the file: this runs its code, so trust its source."
        ),
    ] = False,
    feature_names: Annotated[
        str | None,
        typer.Option(help="Comma-separated feature names, for a model fitted without them."),
    ] = None,
    format: Annotated[
        Format, typer.Option(help="Publish as skops (re-serialized) or as pickle.")
    ] = Format.skops,
    signing_key: SigningKeyOption = None,
    store: StoreOption = None,
) -> None:
    """Publish a model fitted elsewhere, once it is shown to serve; its sha256 is recorded."""
    settings = settings_from(store=store, signing_key=signing_key)
    key = signing_key_of(settings)
    names = [n.strip() for n in feature_names.split(",")] if feature_names else None
    try:
        with err().status(f"Importing {path}…", spinner="dots"):
            result = import_model(
                path,
                name,
                open_store(settings),
                trust_pickle=trust_pickle,
                sample=sample,
                feature_names=names,
                fmt=format.value,
                signing_key=key,
                trusted=settings.allowlist,
            )
    except ModelServeError as exc:
        fail(exc.message)
    report(result)
    typer.echo(f"source:  {path} (sha256 {result.manifest.training_data.sha256})")
    if format is Format.pickle and not settings.allow_pickle:
        err().print(
            "note: the server loads pickle artifacts only with MODELSERVE_ALLOW_PICKLE=true",
            highlight=False,
        )
