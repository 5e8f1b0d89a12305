"""``modelserve models``: inspect the model store."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelserve.cli.common import StoreOption, VersionOption, err, fail, settings_from
from modelserve.core.errors import ModelServeError
from modelserve.core.registry import ModelRegistry, open_store

models_app = typer.Typer(help="Inspect the model store.", no_args_is_help=True)


@models_app.command("list")
def models_list(store: StoreOption = None) -> None:
    """List every model in the store with its versions."""
    settings = settings_from(store=store)
    model_store = open_store(settings)
    names = model_store.list_models()
    if not names:
        typer.echo(f"no models in {settings.store}")
        return
    for name in names:
        versions = model_store.list_versions(name)
        try:
            manifest = model_store.read_manifest(name, versions[-1])
            about = f"{manifest.estimator.class_name.rsplit('.', 1)[-1]}, " + ", ".join(
                f"{k}={v:.4g}" for k, v in manifest.metrics.items()
            )
        except ModelServeError as exc:
            about = f"newest manifest unreadable: {exc.message}"
        typer.echo(f"{name}  versions {', '.join(map(str, versions))}  ({about})")


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: VersionOption = None,
    verify: Annotated[
        bool, typer.Option(help="Also verify and load the model file, as the server would.")
    ] = True,
    store: StoreOption = None,
) -> None:
    """Print one version's manifest; with --verify (default) check it loads as the server would."""
    settings = settings_from(store=store)
    try:
        registry = ModelRegistry(settings)
        manifest = registry.store.read_manifest(name, version)
        if verify:
            registry.load_predictor(name, manifest.version)
    except ModelServeError as exc:
        fail(exc.message)
    typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
    if verify:
        err().print(f"verified: {name} v{manifest.version} loads and matches its manifest")
