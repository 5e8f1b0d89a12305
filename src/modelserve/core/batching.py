"""Adaptive micro-batching: concurrent small requests to one model share one predict call.

For estimators whose ``predict`` has a real cost per call (scikit-learn's input checks, an
ensemble's trees), answering twenty one-row requests with one twenty-row call is much cheaper
than twenty calls. A :class:`MicroBatcher` per model version queues validated batches; while
its predict runs in a worker thread the event loop keeps accepting requests, and those that
arrive meanwhile are merged into the next call (up to ``max_rows`` rows). So batching adapts
to the load by itself: an idle server predicts a lone request at once, a busy one merges.

Under steady concurrent load that alone splits the clients into groups that take turns: those
answered by one call send their next requests while the other group's call runs, so each call
holds half of them (8 clients, 4 a call) and pays the per-call cost twice as often. So a batcher
counts how many requests were in play at the end of its last call (the ones it answered and the
ones waiting) and, before a call in a worker thread, waits until as many are queued again — at
most half the last call's duration and ``GATHER_LIMIT``. A lone client is never kept waiting
(it counts one), and the count falls by one a call once fewer requests come. ``max_wait`` (0 by
default) instead waits a fixed time before every call. A version answered by its compiled form
predicts on the event loop itself (``merges_inline``): the requests read in the same turn of the
loop are merged, no thread is involved, and nothing waits.

Each request is checked on its own before it joins a batch, so one bad request never fails
the others; answers are split back row for row. Linear models on the lean path are never
batched (their predict costs ~1 µs). It runs on the event loop; the data plane awaits it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread

from modelserve.core.batch import Batch, Prediction, merge
from modelserve.core.errors import ModelServeError
from modelserve.core.predictor import Predictor

BatchObserver = Callable[[Predictor, int, int], None]
"""Called after each predict call with (predictor, requests merged, rows)."""

GATHER_LIMIT = 0.002
"""Longest wait, in seconds, for the requests of the last call's clients to come back."""


@dataclass(slots=True)
class _Waiting:
    batch: Batch
    future: asyncio.Future[Prediction] = field(repr=False)


class MicroBatcher:
    """Merges concurrent batches for one predictor into as few predict calls as it can."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_rows: int,
        max_wait: float = 0.0,
        observe: BatchObserver | None = None,
    ) -> None:
        # Weak: Batchers keys batchers by predictor weakly, and a strong reference here would
        # keep every swapped-out version alive. Requests in the queue hold their predictor.
        self._predictor = weakref.ref(predictor)
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.observe = observe
        self._queue: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None
        self._in_play = 1  # requests answered by the last call plus those then waiting
        self._last_call = 0.0  # how long the last call in a worker thread took, in seconds
        self._gathered: asyncio.Future[None] | None = None  # resolved once enough are queued

    @property
    def in_play(self) -> int:
        """Requests in play at the end of the last call (answered by it, or waiting then), less
        one for each call since that held fewer: how many a call waits to gather."""
        return self._in_play

    @property
    def predictor(self) -> Predictor:
        predictor = self._predictor()
        if predictor is None:  # pragma: no cover - a caller holds it while it predicts
            raise RuntimeError("the model version of this batcher is gone")
        return predictor

    async def predict(self, batch: Batch) -> Prediction:
        """Predict the checked ``batch``, merged with whatever else waits for this model."""
        self.predictor.check_outputs(batch)  # a bad request fails alone, before it merges
        if len(batch) >= self.max_rows:
            prediction = await anyio.to_thread.run_sync(self.predictor.predict_batch, batch)
            self._observed(1, len(batch))
            return prediction
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(batch, future))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        elif self._gathered is not None and not self._gathered.done() and self._enough():
            self._gathered.set_result(None)
        return await future

    async def _drain(self) -> None:
        """Predict queued batches until none are left, then stop (no idle task per model)."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait > 0 and sum(len(w.batch) for w in self._queue) < self.max_rows:
                    await asyncio.sleep(self.max_wait)
                elif len(self._queue) < self._in_play and not self.predictor.merges_inline:
                    await self._gather(min(self._last_call / 2, GATHER_LIMIT))
                taken = self._take()
                if taken:
                    started = loop.time()
                    threaded = await self._run(taken)
                    if threaded:
                        self._last_call = loop.time() - started
                    self._in_play = max(len(taken) + len(self._queue), self._in_play - 1)
        finally:
            self._drainer = None

    def _enough(self) -> bool:
        """Whether the queue holds ``_in_play`` requests, or as many rows as one call takes."""
        return (
            len(self._queue) >= self._in_play
            or sum(len(w.batch) for w in self._queue) >= self.max_rows
        )

    async def _gather(self, budget: float) -> None:
        """Wait up to ``budget`` seconds until the queue holds enough (:meth:`_enough`)."""
        if budget <= 0 or self._enough():
            return
        self._gathered = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((self._gathered,), timeout=budget)
        finally:
            self._gathered = None

    def _take(self) -> list[_Waiting]:
        """Requests from the head of the queue, up to ``max_rows`` rows (at least one)."""
        taken: list[_Waiting] = []
        rows = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.future.done():  # its client gave up (deadline): do not predict it
                self._queue.pop(0)
                continue
            size = len(waiting.batch)
            if taken and rows + size > self.max_rows:
                break
            taken.append(self._queue.pop(0))
            rows += size
        return taken

    async def _run(self, taken: list[_Waiting]) -> bool:
        """Predict ``taken`` in one call and answer each; whether the call ran in a thread."""
        merged = merge(
            [w.batch for w in taken],
            return_probabilities=any(w.batch.return_probabilities for w in taken),
        )
        predictor = self.predictor
        inline = predictor.compiled_answers(len(merged))
        try:
            if inline:
                prediction = predictor.predict_unchecked(merged)
            else:
                prediction = await anyio.to_thread.run_sync(predictor.predict_unchecked, merged)
        except Exception as exc:  # every request of the call gets the call's error
            for waiting in taken:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return not inline
        self._observed(len(taken), len(merged))
        start = 0
        for waiting in taken:
            end = start + len(waiting.batch)
            if not waiting.future.done():
                predictions = prediction.predictions[start:end]
                try:  # a request whose answer is not a number fails alone
                    self.predictor.check_finite(predictions)
                except ModelServeError as exc:
                    waiting.future.set_exception(exc)
                else:
                    waiting.future.set_result(
                        Prediction(
                            predictions=predictions,
                            classes=(
                                prediction.classes if waiting.batch.return_probabilities else None
                            ),
                            probabilities=(
                                prediction.probabilities[start:end]
                                if waiting.batch.return_probabilities
                                and prediction.probabilities is not None
                                else None
                            ),
                        )
                    )
            start = end
        return not inline

    def _observed(self, requests: int, rows: int) -> None:
        if self.observe is not None:
            self.observe(self.predictor, requests, rows)


class Batchers:
    """The batcher of each served model version, made on first use; None where not batched."""

    def __init__(
        self, *, enabled: bool, max_rows: int, max_wait: float, observe: BatchObserver | None
    ) -> None:
        self.enabled = enabled
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.observe = observe
        # Weak keys: a version swapped out of the registry takes its batcher with it.
        self._batchers: weakref.WeakKeyDictionary[Predictor, MicroBatcher] = (
            weakref.WeakKeyDictionary()
        )

    def __len__(self) -> int:
        """How many batchers there are (one per version that was batched and is still served)."""
        return len(self._batchers)

    def get(self, predictor: Predictor) -> MicroBatcher | None:
        if not self.enabled or not predictor.batchable:
            return None
        batcher = self._batchers.get(predictor)
        if batcher is None:
            batcher = self._batchers[predictor] = MicroBatcher(
                predictor, max_rows=self.max_rows, max_wait=self.max_wait, observe=self.observe
            )
        return batcher


__all__ = ["BatchObserver", "Batchers", "MicroBatcher"]
