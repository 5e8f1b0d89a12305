"""What the command modules share: messages, the common options, settings from flags."""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from modelserve.core.errors import ModelServeError
from modelserve.core.manifest import PLOT_FILE
from modelserve.core.registry import open_store
from modelserve.core.settings import Settings
from modelserve.core.signing import load_signing_key
from modelserve.core.store import parse_version
from modelserve.training.train import TrainConfig, TrainResult, estimator_kind, train

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from rich.console import Console


@functools.cache
def err() -> Console:
    """Messages for people, on stderr (rich is imported only when there is one to write)."""
    from rich.console import Console  # noqa: PLC0415 - `serve` starts faster without rich

    return Console(stderr=True)


def escape(text: str) -> str:
    """``text`` with any rich markup in it escaped."""
    from rich.markup import escape as rich_escape  # noqa: PLC0415

    return rich_escape(text)


SigningKeyOption = Annotated[
    Path | None,
    typer.Option(help="Sign the manifest with this Ed25519 key [env: MODELSERVE_SIGNING_KEY]."),
]
StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Model store directory [env: MODELSERVE_STORE, default ./models]."
    ),
]


def version_option(text: str) -> int:
    version = parse_version(text)
    if version is None or version < 1:
        raise typer.BadParameter(f"{text!r}: a version is written in ASCII digits, from 1")
    return version


VersionOption = Annotated[
    int | None,
    typer.Option(parser=version_option, metavar="INTEGER", help="Version [default: newest]."),
]


class Format(enum.StrEnum):
    skops = "skops"
    pickle = "pickle"


def fail(message: str, code: int = 1) -> NoReturn:
    # escape(): a message may hold brackets ("modelserve[ray]") that are not rich markup.
    err().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        fail(f"invalid settings: {problems}")


def report(result: TrainResult) -> None:
    manifest = result.manifest
    typer.echo(f"name:    {manifest.name}")
    typer.echo(f"version: {manifest.version}")
    typer.echo(f"path:    {result.path}")
    typer.echo(f"model:   {manifest.estimator.class_name} ({manifest.format})")
    metrics = ", ".join(f"{k}={v:.6g}" for k, v in manifest.metrics.items())
    typer.echo(f"metrics: {metrics or 'none (no held-out data)'}")
    schema = manifest.input_schema
    typed = [f"{f.name}: {f.dtype}{'?' if f.nullable else ''}" for f in schema.features]
    if not schema.plain:  # a mixed-type model: say what each feature takes (? = may be missing)
        typer.echo(f"inputs:  {', '.join(typed)}")
    if PLOT_FILE in manifest.attachments:
        typer.echo(f"report:  {result.path / PLOT_FILE}")


def signing_key_of(settings: Settings) -> Ed25519PrivateKey | None:
    if settings.signing_key is None:
        return None
    try:
        return load_signing_key(settings.signing_key)
    except ModelServeError as exc:
        fail(exc.message)


def train_with_status(config: TrainConfig, settings: Settings) -> TrainResult:
    key = signing_key_of(settings)
    try:
        kind = estimator_kind(config.estimator)
        with err().status(f"Training {kind.description} ({config.name})…", spinner="dots"):
            return train(config, open_store(settings), key, settings.allowlist)
    except ModelServeError as exc:
        fail(exc.message)
