"""tox 4 plugin (``pip install "envkit[tox]"``): a test environment that is a model's environment.

    [testenv:model-py{310,311,312}]
    envkit_model = path/to/model
    commands = pytest tests/test_model.py

An environment with ``envkit_model`` installs exactly what the model records (its
``requirements.txt``, or its lock when it has one: the pinned versions, without the hashes,
which pip cannot mix with envkit's own wheel) plus envkit from a wheel of the envkit that runs
tox, instead of the project's package (``skip_install``). The requirement lines become the
environment's ``deps``, so tox's own change detection recreates it when the model's
environment files change. The model is read when tox builds the environment's configuration;
a model that cannot be read fails tox with envkit's one-line reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tox.config.loader.memory import MemoryLoader
from tox.plugin import impl

if TYPE_CHECKING:
    from tox.config.sets import EnvConfigSet
    from tox.session.state import State

KEY = "envkit_model"


@impl
def tox_add_env_config(env_conf: EnvConfigSet, state: State) -> None:
    env_conf.add_config(
        keys=[KEY],
        of_type=str,
        default="",
        desc="a model directory whose recorded requirements this environment installs "
        "(instead of the project's package)",
    )
    model = env_conf[KEY].strip()
    if not model:
        return
    root = Path(state.conf.core["tox_root"])
    lines = model_requirements(root / model)
    env_conf.loaders.insert(0, MemoryLoader(deps="\n".join(lines), skip_install=True))


def model_requirements(model_dir: Path) -> list[str]:
    """The requirement lines that rebuild ``model_dir``'s environment, envkit as a wheel."""
    from tox.report import HandledError

    from envkit.errors import EnvkitError
    from envkit.models.model import Model
    from envkit.sandbox.provision import plan_environment

    try:
        plan = plan_environment(
            model_dir.resolve(), Model.load(model_dir), env_manager="virtualenv"
        )
    except EnvkitError as exc:
        raise HandledError(f"envkit_model = {model_dir}: {exc.message}") from None
    install = plan.install
    lines = [_without_hashes(line) for line in install.requirements]
    return [line for line in lines + install.unhashed if line.strip()]


def _without_hashes(line: str) -> str:
    return " ".join(part for part in line.split() if not part.startswith("--hash"))
