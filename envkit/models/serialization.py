"""Reading the serialized model files of a model, with errors that say what went wrong."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

from envkit.errors import MissingModuleError, ModelFormatError


def load_model_file(path: Path, loader: Callable[[Any], Any], *, what: str = "model") -> Any:
    """``loader(open file)`` on ``path``; a missing file, a missing module or a corrupt pickle
    becomes one :class:`ModelFormatError` naming the file.
    """
    if path.is_dir():
        raise ModelFormatError(
            f"the {what} file {path.name} in the model is a directory, not a file"
        )
    if not path.is_file():
        raise ModelFormatError(f"the {what} file {path.name} is missing from the model")
    with open(path, "rb") as handle:
        try:
            return loader(handle)
        except ModuleNotFoundError as exc:
            # Not the model's format: what this environment holds (exit code 1, like any
            # model that fails to load).
            if exc.name and exc.name.split(".")[0] == "mlflow":
                raise MissingModuleError(
                    f"{path.name} refers to MLflow classes; install MLflow to load this model",
                    module=exc.name,
                ) from exc
            raise MissingModuleError(
                f"loading {path.name} needs the module {exc.name!r}, which is not installed in "
                "this environment (envkit deps MODEL --check compares it with the model's "
                "requirements)",
                module=exc.name,
            ) from exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ModelFormatError(
                f"{path.name} cannot be deserialized ({type(exc).__name__}: {exc}); the file is "
                "corrupt or was written by incompatible library versions"
            ) from exc
