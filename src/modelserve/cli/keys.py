"""``modelserve keys``: the Ed25519 keys that sign and verify manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelserve.cli.common import fail
from modelserve.core.errors import ModelServeError
from modelserve.core.signing import generate_keys

keys_app = typer.Typer(help="Ed25519 keys that sign and verify manifests.", no_args_is_help=True)


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="Directory for signing-key.pem and verify-key.pem.")],
) -> None:
    """Create an Ed25519 key pair: signing-key.pem for training, verify-key.pem for servers."""
    try:
        private, public = generate_keys(out)
    except ModelServeError as exc:
        fail(exc.message)
    typer.echo(f"signing key: {private}  (train with MODELSERVE_SIGNING_KEY={private})")
    typer.echo(f"verify key:  {public}  (serve with MODELSERVE_VERIFY_KEY={public})")
