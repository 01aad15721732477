"""The scoring server's ASGI application (Starlette): MLflow's scoring protocol.

Routes: ``GET /ping`` and ``GET /health`` (200 while the model is loaded), ``GET /version``
(the envkit version, as text), ``POST /invocations`` (a JSON payload with one of
``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs`` and optional ``params``,
or ``text/csv``) answered with ``{"predictions": ...}``.

Every failure of a request is a JSON body ``{"error_code": ..., "message": ...}``: 400 for a
payload that cannot be read or does not match the signature, 408 for a body that does not
arrive within the body timeout, 413 for a body over the limit,
415 for an unsupported content type, 500 when the model raises. The process keeps serving.
Payloads are parsed by :func:`envkit.models.serving_input.parse_serving_input`, the parser
``envkit validate --input`` and :func:`envkit.models.validate_serving_input` use.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from envkit._version import __version__
from envkit.serving.scoring import (  # the scoring core; names kept importable from here
    _DONE,
    BAD_REQUEST,
    ENDPOINT_NOT_FOUND,
    REQUEST_LIMIT_EXCEEDED,
    STREAM_KEY,
    ScoringError,
    _error_body,
    _Scorer,
    internal_error,
    predictions_to_json,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from envkit.serving.batching import BatchSettings, MicroBatcher

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "ScoringError",
    "create_app",
    "predictions_to_json",
]

DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
# Seconds a client may take to send a request body (and, in the server, its headers): 408 after.
DEFAULT_BODY_TIMEOUT = 30.0


_SUPPORTED_MIME = ("application/json", "text/csv", "application/vnd.apache.parquet")


def _batcher(scorer: _Scorer, batching: BatchSettings | None) -> MicroBatcher | None:
    """The batching thread, for a row-independent model (refused for any other)."""
    from envkit.errors import UsageError
    from envkit.serving.batching import MicroBatcher

    if batching is None or batching.max_batch_size <= 1:
        return None
    if not getattr(scorer.model, "row_independent", False):
        raise UsageError(
            "--max-batch-size: this model does not declare a row-independent predict, so "
            "requests cannot be merged (save it with row_independent=True if each row's "
            "prediction depends on that row only; sklearn models are by default), or serve it "
            "without batching"
        )
    return MicroBatcher(scorer, batching)


async def _score(
    request: Request,
    scorer: _Scorer,
    batcher: MicroBatcher | None,
    max_body_bytes: int,
    body_timeout: float,
) -> bytes | Response:
    """The answer to one POST /invocations: a body, or a streaming response."""
    content_type = _content_type(request)
    arrived = batcher.arriving() if batcher is not None else (lambda: None)
    try:
        body = await _read_body(request, max_body_bytes, body_timeout)
    finally:
        arrived()
    if _wants_stream(body, content_type):
        return await _stream_response(scorer, body, content_type)
    if batcher is None:
        return await scorer.in_thread(body, content_type)
    return await batcher.score(body, content_type)


def _wants_stream(body: bytes, content_type: str) -> bool:
    """Whether a JSON payload asks for streaming (a top-level ``"stream": true``)."""
    if b'"stream"' not in body or "json" not in content_type:
        return False
    from envkit.errors import ServingInputError
    from envkit.models.serving_input import decode_json_payload

    try:
        return decode_json_payload(body).get(STREAM_KEY) is True
    except ServingInputError:
        return False  # the general path words the error


async def _stream_response(scorer: _Scorer, body: bytes, content_type: str) -> Response:
    """Server-sent events, one ``data: <json>`` per chunk of ``predict_stream`` and
    ``data: [DONE]`` at the end, as MLflow's agent server streams. Errors before the first
    chunk are ordinary error responses."""
    from starlette.responses import StreamingResponse

    stream = await scorer.run(scorer.stream, body, content_type)

    async def events() -> Any:
        while True:
            event = await scorer.run(scorer.next_chunk, stream)
            if event is None:
                yield _DONE
                return
            yield event
            if event.endswith(_DONE):
                return

    return StreamingResponse(events(), media_type="text/event-stream")


def _content_type(request: Request) -> str:
    """The request's content type; 415 for one the protocol does not know."""
    header = request.headers.get("content-type") or "application/json"
    mime = header.split(";", 1)[0].strip().lower()
    if mime not in _SUPPORTED_MIME:
        raise ScoringError(
            415,
            BAD_REQUEST,
            f"unsupported content type {header!r}; send application/json (a payload with one "
            "of dataframe_split, dataframe_records, instances, inputs) or text/csv",
        )
    return header


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refusing (413) one over ``limit`` bytes before reading all of it, and
    (408) one that takes longer than ``timeout`` seconds; a client that disconnects mid-body
    is one log line (there is nobody to answer)."""
    from starlette.requests import ClientDisconnect

    try:
        body = await _within(timeout, _receive_body(request, limit))
    except TimeoutError:
        logger.warning(
            "%s sent no complete request body within %gs: 408", _client(request), timeout
        )
        raise ScoringError(
            408, BAD_REQUEST, f"the request body did not arrive within {timeout:g} seconds"
        ) from None
    except ClientDisconnect:
        logger.warning("%s disconnected before sending the whole request body", _client(request))
        raise ScoringError(400, BAD_REQUEST, "the client disconnected mid-body") from None
    if not body.strip():
        raise ScoringError(
            400,
            BAD_REQUEST,
            "the request body is empty; send a JSON payload such as "
            '{"dataframe_split": {"columns": [...], "data": [[...]]}} or CSV',
        )
    return body


async def _within(seconds: float, work: Awaitable[bytes]) -> bytes:
    """``await work``, or :class:`TimeoutError` after ``seconds`` (asyncio's own deadline where
    there is one: anyio's costs a tenth of a small request)."""
    import asyncio

    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await work
    import anyio

    with anyio.fail_after(seconds):
        return await work


def _client(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "a client"


async def _receive_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ScoringError(400, BAD_REQUEST, f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise ScoringError(
                413,
                REQUEST_LIMIT_EXCEEDED,
                f"the request body has {size} bytes, over this server's limit of {limit} "
                "(raise it with --max-body-size)",
            )
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ScoringError(
                413,
                REQUEST_LIMIT_EXCEEDED,
                f"the request body is over this server's limit of {limit} bytes (raise it with "
                "--max-body-size)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: Any,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    batching: BatchSettings | None = None,
) -> Starlette:
    """The scoring server for a loaded pyfunc ``model`` (anything with ``predict``);
    ``body_timeout``: seconds a client may take to send a request body (408 after);
    ``batching``: merge concurrent requests into one predict (:mod:`envkit.serving.batching`),
    for a model whose predict is row-independent only (:class:`~envkit.errors.UsageError`
    otherwise)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    if max_body_bytes <= 0:
        raise ValueError("max_body_bytes must be positive")
    if body_timeout <= 0:
        raise ValueError("body_timeout must be positive")
    scorer = _Scorer(model)
    batcher = _batcher(scorer, batching)

    def json_response(body: bytes | str, status: int = 200) -> Response:
        return Response(body, status_code=status, media_type="application/json")

    async def ping(request: Request) -> Response:
        return json_response("\n")

    async def version(request: Request) -> Response:
        return PlainTextResponse(__version__)

    async def invocations(request: Request) -> Response:
        try:
            result = await _score(request, scorer, batcher, max_body_bytes, body_timeout)
            if not isinstance(result, bytes):
                return result
        except ScoringError as exc:
            return json_response(_error_body(exc.error_code, exc.message), exc.status)
        except Exception as exc:  # a bug of ours: still an answer, and the server goes on
            error = internal_error(f"unexpected {type(exc).__name__}: {exc}", with_traceback=True)
            return json_response(_error_body(error.error_code, error.message), 500)
        return json_response(result)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if status == 404:
            code, message = (
                ENDPOINT_NOT_FOUND,
                f"no endpoint {request.url.path}; use "
                + ("POST /invocations, GET /ping, GET /health or GET /version"),
            )
        elif status == 405:
            code, message = BAD_REQUEST, f"{request.method} is not allowed on {request.url.path}"
        else:
            code, message = BAD_REQUEST, str(getattr(exc, "detail", exc))
        return json_response(_error_body(code, message), status)

    async def server_error(request: Request, exc: Exception) -> Response:
        error = internal_error(f"{type(exc).__name__}: {exc}")
        return json_response(_error_body(error.error_code, error.message), 500)

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.scorer = scorer
    return app
