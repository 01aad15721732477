"""The scoring core of the server, without the HTTP layer (:mod:`envkit.serving.app`): the
loaded model and what each request needs from it, prepared once (:class:`_Scorer`), a request
read and checked (:class:`Prepared`), the errors with MLflow's codes (:class:`ScoringError`), and
predictions written as JSON. :mod:`envkit.serving.batching` merges requests on top of it.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from envkit._lazy import optional_module

logger = logging.getLogger(__name__)

# MLflow's error codes (databricks_pb2.ErrorCode names), so that MLflow clients understand them.
BAD_REQUEST = "BAD_REQUEST"

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"

MALFORMED_REQUEST = "MALFORMED_REQUEST"

REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"

ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"

INTERNAL_ERROR = "INTERNAL_ERROR"


class ScoringError(Exception):
    """A request that gets an error response: HTTP status, MLflow error code, message."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def predictions_to_json(predictions: Any) -> str:
    """The response body ``{"predictions": ...}`` for what ``predict`` returned.

    Values are converted as MLflow's scoring server converts them (bytes as base64, dates as
    ISO strings); a value with no JSON form raises :class:`TypeError` (the server answers 500).
    """
    return predictions_to_body(predictions).decode("utf-8")


def predictions_to_body(predictions: Any) -> bytes:
    """:func:`predictions_to_json` as the UTF-8 bytes the server sends."""
    kind = getattr(getattr(predictions, "dtype", None), "kind", None)
    if type(predictions).__module__ == "numpy" and kind in ("b", "i", "u", "f"):
        fast = _orjson_numeric(predictions, kind)
        if fast is not None:
            return fast
        body = json.dumps({"predictions": predictions.tolist()})  # the common case
    else:
        from envkit.sandbox.runner import to_jsonable

        body = json.dumps({"predictions": to_jsonable(predictions)})
    return body.encode("utf-8")


def _orjson_numeric(predictions: Any, kind: str) -> bytes | None:
    """The body written by orjson straight from the numpy buffer (no ``tolist()``), when orjson
    is installed (it is optional) and the output is the same as :func:`json.dumps`'s: finite
    numbers only, since json writes NaN where orjson writes null. None otherwise."""
    orjson = optional_module("orjson")
    if orjson is None:
        return None
    if kind == "f":
        import numpy as np

        if not np.isfinite(predictions).all():
            return None
    try:
        return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
    except (TypeError, orjson.JSONEncodeError):  # a dtype or layout orjson does not take
        return None


def _error_body(error_code: str, message: str) -> bytes:
    from envkit._redact import redact

    body = {"error_code": error_code, "message": redact(message)}
    return json.dumps(body).encode("utf-8")


def internal_error(detail: str, *, with_traceback: bool = False) -> ScoringError:
    """A 500 whose body names an error id only: what went wrong (the model's error text may
    quote a secret it read) goes to the server's log, redacted, under that id."""
    import traceback
    import uuid

    from envkit._redact import redact

    error_id = uuid.uuid4().hex[:12]
    text = detail + ("\n" + traceback.format_exc().rstrip() if with_traceback else "")
    logger.error("error %s: %s", error_id, redact(text))
    return ScoringError(
        500,
        INTERNAL_ERROR,
        f"the server could not score this request (error id {error_id}); the server's log has "
        "the details",
    )


@dataclass
class Prepared:
    """A request read and checked: the model's input and params, and whether they are
    enforced already (:meth:`PyFuncModel.prepare_input` ran, or the compiled reader built
    them), so that :meth:`_Scorer.predict` calls ``predict_enforced``; ``positional``: the
    data is the 2-D array of the signature's columns, for the model's positional predictor
    (:meth:`PyFuncModel.positional_predictor`)."""

    data: Any
    params: dict[str, Any] | None
    enforced: bool
    positional: bool = False


class _Scorer:
    """The loaded model and what the request handler needs from it (one per process).

    What does not change between requests is prepared here, once: the schemas, and for a
    signature of numeric columns the compiled reader that builds the enforced input straight
    from the payload (:mod:`envkit.models.compiled`).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        meta = getattr(model, "metadata", None)
        self.schema = _call_or_none(meta, "get_input_schema")
        self.params_schema = _call_or_none(meta, "get_params_schema")
        self.from_type_hint = bool(getattr(meta, "is_signature_from_type_hint", False))
        self.pyfunc = _is_pyfunc_model(model) and not model.enforces_by_type_hint
        self.compiled = _compiled_reader(self.schema) if self.pyfunc else None
        self.positional = _positional(model, self.compiled, self.params_schema)
        # One prediction at a time per process: models are not promised to be thread-safe.
        # Parallelism comes from --workers; /ping stays responsive while a prediction runs.
        self.lock = threading.Lock()
        # Requests are scored in one thread, in the order they came: a pool of threads that
        # all wait on the lock costs more than the prediction under concurrent load.
        self._executor: Any = None

    async def in_thread(self, body: bytes, content_type: str) -> bytes:
        """:meth:`score` in the scoring thread, awaited from the event loop."""
        return await self.run(self.score, body, content_type)

    async def run(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in the scoring thread."""
        import asyncio

        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix="envkit-scorer")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def stream(self, body: bytes, content_type: str) -> Any:
        """The model's ``predict_stream`` generator for a payload with ``"stream": true``."""
        from envkit.errors import EnvkitError, SchemaEnforcementError, UsageError

        payload = dict(self._decoded(body, content_type))
        payload.pop(STREAM_KEY, None)
        with self.lock:
            prepared = self.read(json.dumps(payload).encode("utf-8"), content_type)
            try:
                return self.model.predict_stream(prepared.data, params=prepared.params)
            except SchemaEnforcementError as exc:
                raise ScoringError(400, INVALID_PARAMETER_VALUE, exc.message) from None
            except UsageError as exc:  # not a streaming model
                raise ScoringError(400, BAD_REQUEST, exc.message) from None
            except EnvkitError as exc:
                raise internal_error(exc.message) from None
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                raise internal_error(
                    f"the model raised {type(exc).__name__} in predict_stream: {exc}",
                    with_traceback=True,
                ) from None

    def next_chunk(self, stream: Any) -> bytes | None:
        """The next server-sent event of ``stream`` (``data: <json>``), None at its end; a
        model error is an event ``{"error_code", "message"}`` that ends the stream."""
        try:
            with self.lock:
                chunk = next(stream)
        except StopIteration:
            return None
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            error = internal_error(
                f"the model raised {type(exc).__name__} while streaming: {exc}",
                with_traceback=True,
            )
            return _event(_error_body(error.error_code, error.message)) + _DONE
        try:
            from envkit.sandbox.runner import to_jsonable

            return _event(json.dumps(to_jsonable(chunk)).encode("utf-8"))
        except Exception as exc:
            error = internal_error(f"a streamed chunk cannot be sent as JSON: {exc}")
            return _event(_error_body(error.error_code, error.message)) + _DONE

    def _decoded(self, body: bytes, content_type: str) -> dict[str, Any]:
        from envkit.errors import MalformedPayloadError, ServingInputError
        from envkit.models.serving_input import decode_json_payload

        try:
            return decode_json_payload(body)
        except ServingInputError as exc:
            code = MALFORMED_REQUEST if isinstance(exc, MalformedPayloadError) else BAD_REQUEST
            raise ScoringError(400, code, exc.message) from None

    def score(self, body: bytes, content_type: str) -> bytes:
        """The response body for one request; :class:`ScoringError` for an error response."""
        with self.lock:
            prepared = self.read(body, content_type, positional=True)
            predictions = self.predict(prepared)
        return self.render(predictions)

    def read(
        self, body: bytes, content_type: str, *, enforce: bool = False, positional: bool = False
    ) -> Prepared:
        """The request's input; with ``enforce``, checked against the signature already (as
        ``predict`` would), so that requests can be merged; with ``positional``, as the array
        for the model's positional predictor where it has one and the payload allows."""
        from envkit.errors import (
            MalformedPayloadError,
            SchemaEnforcementError,
            ServingInputError,
        )
        from envkit.models.serving_input import (
            check_content_type,
            decode_json_payload,
            parse_serving_input,
        )

        try:
            payload: Any = body
            if self.compiled is not None and check_content_type(content_type) == "application/json":
                payload = decode_json_payload(body)
                if positional and self.positional is not None:
                    array = self.compiled.read_array(payload)
                    if array is not None:
                        return Prepared(array, None, enforced=True, positional=True)
                data = self.compiled.read(payload)
                if data is not None:
                    return Prepared(data, self._default_params(), enforced=True)
            data, params = parse_serving_input(
                payload,
                content_type=content_type,
                schema=self.schema,
                params_schema=self.params_schema,
                signature_from_type_hint=self.from_type_hint,
            )
            if enforce and self.pyfunc:
                data, params = self.model.prepare_input(data, params)
                return Prepared(data, params, enforced=True)
            return Prepared(data, params, enforced=False)
        except SchemaEnforcementError as exc:
            raise ScoringError(400, INVALID_PARAMETER_VALUE, exc.message) from None
        except ServingInputError as exc:
            code = MALFORMED_REQUEST if isinstance(exc, MalformedPayloadError) else BAD_REQUEST
            raise ScoringError(400, code, exc.message) from None
        except ImportError as exc:  # e.g. pandas missing from the model's environment
            raise internal_error(
                f"reading the payload needs a package this environment lacks: {exc}"
            ) from None

    def _default_params(self) -> dict[str, Any] | None:
        """The params of a payload without any: the signature's defaults (as enforcement)."""
        from envkit.models.enforcement import enforce_params

        return enforce_params(None, self.params_schema)

    def predict(self, prepared: Prepared) -> Any:
        """The model's predictions; :class:`ScoringError` when it refuses the input or fails."""
        from envkit.errors import EnvkitError, SchemaEnforcementError

        try:
            return self.call_model(prepared)
        except SchemaEnforcementError as exc:
            raise ScoringError(400, INVALID_PARAMETER_VALUE, exc.message) from None
        except EnvkitError as exc:
            raise internal_error(exc.message) from None
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # A request never takes the process down, even if the model calls sys.exit.
            raise internal_error(
                f"the model raised {type(exc).__name__} while predicting: {exc}",
                with_traceback=True,
            ) from None

    def call_model(self, prepared: Prepared) -> Any:
        """The model's predictions for ``prepared``, its exceptions as they are."""
        if prepared.positional and self.positional is not None:
            return self.positional(prepared.data)
        if prepared.enforced:
            return self.model.predict_enforced(prepared.data, prepared.params)
        return self.model.predict(prepared.data, params=prepared.params)

    def render(self, predictions: Any) -> bytes:
        """The response body for ``predictions``."""
        try:
            return predictions_to_body(predictions)
        except Exception as exc:
            raise internal_error(
                f"the model's predictions ({type(predictions).__name__}) cannot be sent as "
                f"JSON: {exc}; return numbers, strings, bytes, lists, dicts, numpy or pandas data"
            ) from None


STREAM_KEY = "stream"

_DONE = b"data: [DONE]\n\n"


def _event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def _is_pyfunc_model(model: Any) -> bool:
    from envkit.pyfunc.loading import PyFuncModel

    return isinstance(model, PyFuncModel)


def _compiled_reader(schema: Any) -> Any:
    from envkit.models.compiled import compile_input

    try:
        return compile_input(schema)
    except Exception:  # never a reason not to serve: the general path reads everything
        logger.warning("the model's signature cannot be compiled; payloads take the general path")
        return None


def _positional(model: Any, compiled: Any, params_schema: Any) -> Any:
    """The model's predictor of arrays of the signature's columns (one dtype, no params), or
    None: the compiled reader's DataFrame and ``predict_enforced`` then."""
    if compiled is None or not compiled.uniform or params_schema is not None:
        return None
    try:
        return model.positional_predictor(compiled.names)
    except Exception:  # never a reason not to serve: the DataFrame path answers the same
        logger.warning("the model's positional predictor is not available", exc_info=True)
        return None


def _call_or_none(obj: Any, name: str) -> Any:
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        return method()
    except Exception:  # a malformed signature: serve without conversion, enforce at predict
        logger.warning("the model's %s cannot be read; payloads are not converted", name)
        return None
