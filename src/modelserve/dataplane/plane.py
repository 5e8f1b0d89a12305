"""The data plane: decode -> check -> predict -> encode, the same steps for every entry point.

The routes (both APIs), the fast lane and the CLI call these functions; each transport only
reads its bytes in and writes the answer out. A request is *prepared* (decoded by its wire
format's one decoder, then checked by the model's one schema check), *predicted* (at once, or
merged with other requests by a :class:`~modelserve.core.batching.MicroBatcher`), and
*encoded* by its answer format's one encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelserve.core.batch import Batch
from modelserve.core.batching import MicroBatcher
from modelserve.core.predictor import Predictor
from modelserve.protocol import native, scoring
from modelserve.protocol.v2 import decode as v2_decode
from modelserve.protocol.v2 import encode as v2_encode
from modelserve.protocol.v2.types import RequestedOutput
from modelserve.protocol.wire import Encoded


@dataclass(slots=True)
class Prepared:
    """A decoded, checked request, ready to predict; what its encoder needs besides."""

    batch: Batch
    request_id: str | None = None
    outputs: list[RequestedOutput] | None = None  # /v2: the outputs to answer with


# -- native JSON ------------------------------------------------------------------------------


def prepare_native(predictor: Predictor, body: bytes | str) -> Prepared:
    """Decode a native request body and check its batch against the model's schema."""
    return Prepared(predictor.check(native.decode(body, predictor.schema.count)))


def answer_native(predictor: Predictor, body: bytes | str) -> Encoded:
    """The whole native request, predicted at once: decode, check, predict, encode."""
    batch = predictor.check(native.decode(body, predictor.schema.count))
    return native.encode(predictor.name, predictor.version, predictor.predict_batch(batch))


# -- Open Inference Protocol ------------------------------------------------------------------


def prepare_v2(predictor: Predictor, body: bytes, header_length: int | None) -> Prepared:
    """Decode a V2 request (JSON, or a JSON header of ``header_length`` bytes and binary
    tensors) and check its batch against the model's schema."""
    request = v2_decode.decode(body, header_length, predictor.manifest)
    return Prepared(predictor.check(request.batch), request.request_id, request.outputs)


def answer_v2(predictor: Predictor, body: bytes, header_length: int | None) -> Encoded:
    """The whole V2 request, predicted at once: decode, check, predict, encode."""
    request = v2_decode.decode(body, header_length, predictor.manifest)
    prediction = predictor.predict_batch(predictor.check(request.batch))
    return v2_encode.encode(
        predictor.name, predictor.version, prediction, request.request_id, request.outputs
    )


# -- the scoring contracts of MLflow and KServe V1 ---------------------------------------------


def prepare_scoring(predictor: Predictor, content_type: str | None, body: bytes) -> Prepared:
    """Decode an MLflow / KServe V1 body and check its batch against the model's schema."""
    types = {f.name: f.dtype for f in predictor.manifest.input_schema.features}
    return Prepared(predictor.check(scoring.decode(body, content_type, types)))


def answer_scoring(predictor: Predictor, content_type: str | None, body: bytes) -> Encoded:
    """The whole MLflow / KServe V1 request, predicted at once."""
    prepared = prepare_scoring(predictor, content_type, body)
    return scoring.encode(predictor.predict_batch(prepared.batch))


# -- merged with other requests ---------------------------------------------------------------


Answer = Literal["native", "v2", "scoring"]
"""Which encoder writes a merged request's answer: native, Open Inference Protocol, or the
scoring contracts' ``{"predictions": [...]}``."""


async def answer_merged(batcher: MicroBatcher, prepared: Prepared, *, form: Answer) -> Encoded:
    """Predict a prepared request merged with others to the same model, then encode it."""
    prediction = await batcher.predict(prepared.batch)
    predictor = batcher.predictor
    if form == "scoring":
        return scoring.encode(prediction)
    if form == "v2":
        return v2_encode.encode(
            predictor.name,
            predictor.version,
            prediction,
            prepared.request_id,
            prepared.outputs or [],
        )
    return native.encode(predictor.name, predictor.version, prediction)
