"""What every wire format shares: the base of its documented schemas, and an encoded answer."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base of the bodies the HTTP API documents: each is built when first used, not at import.

    Start-up then pays only for what it uses (FastAPI builds the models its routes declare); the
    request bodies the fast lane reads without Pydantic and the error bodies are built when a
    request first needs them (a few milliseconds, once).
    """

    model_config = ConfigDict(defer_build=True)


@dataclass(slots=True)
class Encoded:
    """An answer's body as sent, with what HTTP needs to send it.

    ``header_length``: the length of its JSON header when binary tensors follow it (/v2's binary
    extension), else None (all JSON). ``rows``: how many rows it answers, for the access log.
    """

    body: bytes
    header_length: int | None
    rows: int
