"""The scoring server: MLflow's scoring protocol on Starlette + uvicorn.

:func:`serve` serves a model in its rebuilt environment (``envkit serve``);
:func:`create_app` is the ASGI application for a loaded model; :func:`run_server` serves in
this interpreter. starlette and uvicorn (the ``serve`` extra) are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envkit._lazy import lazy_attributes

if TYPE_CHECKING:
    from envkit.serving.app import create_app, predictions_to_json
    from envkit.serving.launch import serve
    from envkit.serving.server import run_server

__all__ = ["create_app", "predictions_to_json", "run_server", "serve"]

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "create_app": "envkit.serving.app",
        "predictions_to_json": "envkit.serving.app",
        "run_server": "envkit.serving.server",
        "serve": "envkit.serving.launch",
    },
)
