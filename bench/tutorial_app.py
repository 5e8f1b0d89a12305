"""The plain FastAPI + Pydantic app of a typical tutorial: the baseline most teams start from.

MODEL_PATH names a skops file; the model is loaded at startup and `predict` is called in the
route, as the tutorials do.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state["model"] = sio.load(os.environ["MODEL_PATH"])
    yield


app = FastAPI(lifespan=lifespan)


class PredictRequest(BaseModel):
    instances: list[list[float]]


class PredictResponse(BaseModel):
    predictions: list[float]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    predictions = state["model"].predict(np.array(request.instances))
    return PredictResponse(predictions=predictions.tolist())
