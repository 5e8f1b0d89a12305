"""The ``modelserve`` command line: train, serve, predict, and inspect the model store.

One Typer app; each command group is a module of its own (:mod:`~modelserve.cli.train`,
:mod:`~modelserve.cli.serve`, :mod:`~modelserve.cli.predict`, :mod:`~modelserve.cli.models`,
:mod:`~modelserve.cli.keys`), registered here in the order ``--help`` lists them. Every command
calls the same core functions the HTTP app uses; settings come from the one
:class:`~modelserve.core.settings.Settings` class (environment variables), overridden by flags.
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelserve import __version__
from modelserve.cli.keys import keys_app
from modelserve.cli.models import models_app
from modelserve.cli.predict import predict_command
from modelserve.cli.serve import serve_command
from modelserve.cli.train import import_command, train_command

app = typer.Typer(
    name="modelserve",
    help="Train scikit-learn models into a verified store and serve them over HTTP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.command("train")(train_command)
app.command("serve")(serve_command)
app.command("predict")(predict_command)
app.command("import")(import_command)

train_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
"""``python -m modelserve.train_model``: the train command alone."""
train_app.command()(train_command)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"modelserve {__version__}")
        raise typer.Exit


def main() -> None:
    """Console script entry point."""
    app()
