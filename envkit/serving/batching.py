"""Adaptive micro-batching: concurrent requests merged into one ``predict`` call.

With ``--max-batch-size N --max-latency-ms MS``, each request's body goes to one batching
thread per server process. The thread reads and enforces each request on its own (a request
that is malformed or does not match the signature gets its own 4xx at once), then merges the
ones whose inputs fit together (DataFrames with the same columns and dtypes, or arrays with
the same dtype and row shape, and the same params) into one ``predict_enforced`` call (or
one call of the model's positional predictor, for arrays read for it), and splits the
predictions back by rows. A batch closes when it holds N rows, or MS milliseconds
after its first request arrived, or at once when no other request is waiting and none is on
its way (so a lone request is never held back: batches grow only with concurrency).

If the merged prediction fails, or its result cannot be split by rows, every request of the
batch is predicted alone, so a bad row fails its own request only. Only models whose predict
is row-independent may be batched (:attr:`envkit.pyfunc.PyFuncModel.row_independent`): the
answer for a row then does not depend on the rows it is predicted with (for floating-point
outputs, up to the last digit where a library's vectorised kernels round differently).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envkit.serving.scoring import Prepared, _Scorer

logger = logging.getLogger("envkit.serving")

__all__ = ["BatchSettings", "MicroBatcher"]


@dataclass(frozen=True)
class BatchSettings:
    """``max_batch_size``: rows per merged predict; ``max_latency_ms``: the longest a request
    waits for others to join it."""

    max_batch_size: int
    max_latency_ms: float

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if not 0 <= self.max_latency_ms < float("inf"):
            raise ValueError("max_latency_ms must be a number >= 0")


@dataclass
class _Request:
    body: bytes
    content_type: str
    answer: Callable[[bytes | BaseException], None]
    arrived: float = field(default_factory=time.monotonic)
    prepared: Prepared | None = None
    rows: int = 0


class MicroBatcher:
    """The batching thread of one server process, and what request handlers await."""

    def __init__(self, scorer: _Scorer, settings: BatchSettings) -> None:
        self.scorer = scorer
        self.settings = settings
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._arriving = 0  # requests whose body is being read (they will join soon)
        self._carry: _Request | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def arriving(self) -> Callable[[], None]:
        """Note a request on its way (its body is being read); call the result when it is in
        the queue or gone."""
        self._arriving += 1
        done = False

        def arrived() -> None:
            nonlocal done
            if not done:
                done = True
                self._arriving -= 1

        return arrived

    async def score(self, body: bytes, content_type: str) -> bytes:
        """The response body for one request (raises its ScoringError)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()

        def answer(result: bytes | BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        self._ensure_started()
        self._queue.put(_Request(body, content_type, answer))
        return await future

    def close(self) -> None:
        """Stop the thread once the queued requests are answered."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="envkit-batcher", daemon=True
                    )
                    self._thread.start()

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._carry or self._queue.get()
            self._carry = None
            if first is None:
                return
            batch = self._collect(first)
            if batch:
                try:
                    self._predict(batch)
                except BaseException as exc:  # a bug of ours: every request still gets an answer
                    for request in batch:
                        request.answer(exc)

    def _collect(self, first: _Request) -> list[_Request]:
        """The requests of one batch, each read and enforced; the refused ones answered."""
        batch: list[_Request] = []
        rows = 0
        request: _Request | None = first
        deadline = first.arrived + self.settings.max_latency_ms / 1000
        while request is not None:
            if self._read(request):
                if batch and rows + request.rows > self.settings.max_batch_size:
                    self._carry = request  # the first of the next batch
                    break
                batch.append(request)
                rows += request.rows
                if rows >= self.settings.max_batch_size:
                    break
            request = self._next(deadline)
        return batch

    def _next(self, deadline: float) -> _Request | None:
        """The next queued request, waiting until ``deadline`` only while others are on their
        way or the queue is not empty; None when the batch should close."""
        try:
            request = self._queue.get_nowait()
        except queue.Empty:
            wait = deadline - time.monotonic()
            if wait <= 0 or self._arriving <= 0:
                return None
            try:
                request = self._queue.get(timeout=wait)
            except queue.Empty:
                return None
        if request is None:  # closing: finish this batch, then stop
            self._queue.put(None)
        return request

    def _read(self, request: _Request) -> bool:
        """Read and enforce one request; False (and answered) when it is refused."""
        from envkit.serving.scoring import ScoringError

        try:
            request.prepared = self.scorer.read(
                request.body, request.content_type, enforce=True, positional=True
            )
        except ScoringError as exc:
            request.answer(exc)
            return False
        request.rows = _rows(request.prepared.data)
        return True

    def _predict(self, batch: list[_Request]) -> None:
        groups: dict[Any, list[_Request]] = {}
        for request in batch:
            assert request.prepared is not None
            key = _merge_key(request.prepared)
            groups.setdefault(key if key is not None else id(request), []).append(request)
        for group in groups.values():
            if len(group) == 1:
                self._alone(group[0])
            else:
                self._merged(group)

    def _alone(self, request: _Request) -> None:
        from envkit.serving.scoring import ScoringError

        assert request.prepared is not None
        try:
            with self.scorer.lock:
                predictions = self.scorer.predict(request.prepared)
            request.answer(self.scorer.render(predictions))
        except ScoringError as exc:
            request.answer(exc)

    def _merged(self, group: list[_Request]) -> None:
        from envkit.serving.scoring import Prepared

        counts = [r.rows for r in group]
        first = group[0].prepared
        assert first is not None
        data = _concat([r.prepared.data for r in group if r.prepared is not None])
        merged = Prepared(data, first.params, enforced=True, positional=first.positional)
        try:
            with self.scorer.lock:
                predictions = self.scorer.call_model(merged)
            parts = _split(predictions, counts)
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            logger.info(
                "a batch of %d requests failed (%s: %s); predicting each alone",
                len(group),
                type(exc).__name__,
                exc,
            )
            parts = None
        if parts is None:
            for request in group:
                self._alone(request)
            return
        for request, part in zip(group, parts):
            self._answer_part(request, part)

    def _answer_part(self, request: _Request, part: Any) -> None:
        from envkit.serving.scoring import ScoringError

        try:
            request.answer(self.scorer.render(part))
        except ScoringError as exc:
            request.answer(exc)


def _settle(future: asyncio.Future[bytes], result: bytes | BaseException) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _rows(data: Any) -> int:
    shape = getattr(data, "shape", None)
    if shape:
        return int(shape[0])
    return 1


def _merge_key(prepared: Prepared) -> Any:
    """Requests with equal keys can be predicted together; None: predict it alone."""
    import numpy as np
    import pandas as pd

    if not prepared.enforced:
        return None
    try:
        params = json.dumps(prepared.params, sort_keys=True)
    except (TypeError, ValueError):
        return None
    data = prepared.data
    if isinstance(data, pd.DataFrame):
        if not isinstance(data.index, pd.RangeIndex):
            return None
        return ("frame", params, tuple(data.columns), tuple(map(str, data.dtypes)))
    if isinstance(data, np.ndarray) and data.ndim >= 1:
        return ("array", prepared.positional, params, str(data.dtype), data.shape[1:])
    return None


def _concat(parts: list[Any]) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts)


def _split(predictions: Any, counts: list[int]) -> list[Any] | None:
    """``predictions`` cut into each request's rows; None when they are not one per row."""
    import numpy as np
    import pandas as pd

    total = sum(counts)
    if isinstance(predictions, (pd.DataFrame, pd.Series)):
        if len(predictions) != total:
            return None
        cut = predictions.iloc
    elif isinstance(predictions, np.ndarray) and predictions.ndim >= 1:
        if predictions.shape[0] != total:
            return None
        cut = predictions
    elif isinstance(predictions, list) and len(predictions) == total:
        cut = predictions
    else:
        return None
    parts = []
    start = 0
    for count in counts:
        parts.append(cut[start : start + count])
        start += count
    return parts
