"""The model's process of :func:`envkit.pyfunc.spark_udf` with an env manager.

``python -m envkit.integrations.spark_worker MODEL_DIR PARAMS_JSON`` runs with the Python of
the model's rebuilt environment, started once per Spark Python worker. It loads the model once,
answers with a ready frame (or an error frame with the one-line reason), then reads batches
from standard input and writes predictions to standard output until standard input closes.

A frame is one status byte (``O`` ok, ``E`` error with a UTF-8 reason as payload), an 8-byte
big-endian length and the payload: a batch is an Arrow IPC stream of one table (pyarrow is
version-stable where a pickle of a pandas DataFrame is not, and the driver's pandas is rarely
the model's). The model's own prints go to standard error, so they never corrupt a frame.
The Spark side (:mod:`envkit.integrations.spark`) uses the same helpers.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any, BinaryIO

OK = b"O"
ERROR = b"E"
_HEADER = struct.Struct(">cQ")


def write_frame(stream: BinaryIO, kind: bytes, payload: bytes) -> None:
    stream.write(_HEADER.pack(kind, len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """``size`` bytes, or ``None`` at the end of the stream (before or inside them)."""
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame ``(kind, payload)``, or ``None`` when the stream has ended."""
    head = _read_exactly(stream, _HEADER.size)
    if head is None:
        return None
    kind, size = _HEADER.unpack(head)
    payload = _read_exactly(stream, size)
    return None if payload is None else (kind, payload)


def to_arrow(frame: Any) -> bytes:
    """A pandas DataFrame as an Arrow IPC stream."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_arrow(data: bytes) -> Any:
    """The pandas DataFrame of an Arrow IPC stream."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.BufferReader(data)).read_pandas()


def predictions_frame(predictions: Any) -> Any:
    """A model's predictions as a DataFrame with string column names: a DataFrame as it is, a
    Series or 1-D array (or list) as one column ``"0"``, a 2-D array with one column per
    output, a dict of columns as they are."""
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        frame = predictions
    elif isinstance(predictions, pd.Series):
        frame = pd.DataFrame({"0": predictions.to_numpy()})
    elif isinstance(predictions, dict):
        frame = pd.DataFrame(predictions)
    else:
        array = np.asarray(predictions)
        if array.ndim == 0:
            raise TypeError(f"the model returned one {type(predictions).__name__}, not one per row")
        frame = pd.DataFrame({"0": list(array)} if array.ndim > 2 else array)
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def one_line(exc: BaseException) -> str:
    """An exception as one readable line (envkit's own errors are already one)."""
    from envkit.errors import EnvkitError

    text = str(exc) if isinstance(exc, EnvkitError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def serve_batches(model: Any, params: dict[str, Any] | None, inp: BinaryIO, out: BinaryIO) -> None:
    """Predict each batch read from ``inp``; answer on ``out`` until ``inp`` ends."""
    while True:
        frame = read_frame(inp)
        if frame is None:
            return
        try:
            result = to_arrow(predictions_frame(model.predict(from_arrow(frame[1]), params=params)))
        except Exception as exc:
            write_frame(out, ERROR, one_line(exc).encode("utf-8"))
            continue
        write_frame(out, OK, result)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    model_dir, params = args[0], json.loads(args[1]) if len(args) > 1 else None
    out = os.fdopen(os.dup(1), "wb")  # frames only: the model's prints go to standard error
    os.dup2(2, 1)
    try:
        from envkit.pyfunc.loading import load_model

        model = load_model(model_dir, suppress_warnings=True)
    except Exception as exc:
        write_frame(out, ERROR, f"loading the model failed: {one_line(exc)}".encode())
        return 1
    write_frame(out, OK, b"")
    serve_batches(model, params, sys.stdin.buffer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
