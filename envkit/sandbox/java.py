"""The Java a model needs: flavors that run on a JVM (``spark``, ``h2o``) record the Java major
version they were saved with (``java_major_version`` in their flavor section); a model MLflow
wrote records none, and its library's version says it: ``pyspark_version`` (Spark 4 needs Java
17, Spark 3 Java 8), ``h2o_version`` (H2O 3 runs on Java 8 or later).

:func:`check_java` runs before an environment is built for such a model: a missing or older JVM
is an :class:`~envkit.errors.EnvironmentBuildError` (exit 3) that says what to install. The JVM
is the host's (``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``), as pyspark finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from envkit._java import installed_java_major, java_executable
from envkit.errors import EnvironmentBuildError

if TYPE_CHECKING:
    from envkit.models.model import Model

__all__ = [
    "JAVA_KEY",
    "JavaNeed",
    "check_java",
    "installed_java_major",
    "java_executable",
    "required_java",
]

JAVA_KEY = "java_major_version"


@dataclass(frozen=True)
class JavaNeed:
    """The Java major version a model needs, and which flavor says so."""

    major: int
    flavor: str


def required_java(model: Model) -> JavaNeed | None:
    """The highest Java major version the model's flavors need (``None``: no JVM needed)."""
    needs = []
    for name, conf in model.flavors.items():
        if not isinstance(conf, dict):
            continue
        major = _recorded_major(conf)
        if major is not None:
            needs.append(JavaNeed(major, name))
    return max(needs, key=lambda n: n.major) if needs else None


def _recorded_major(conf: dict[str, object]) -> int | None:
    value = conf.get(JAVA_KEY)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    pyspark = conf.get("pyspark_version")
    if isinstance(pyspark, str) and pyspark[:1].isdigit():
        return 17 if int(pyspark.split(".")[0]) >= 4 else 8
    if isinstance(conf.get("h2o_version"), str):
        return 8  # every H2O 3 release runs on Java 8 or later
    return None


def check_java(model: Model) -> None:
    """Raise :class:`EnvironmentBuildError` unless a JVM the model can run on is here."""
    need = required_java(model)
    if need is None:
        return
    install = (
        f"install Java {need.major} or later (Debian: apt-get install "
        f"openjdk-{max(need.major, 17)}-jre-headless) or set JAVA_HOME"
    )
    java = java_executable()
    if java is None:
        raise EnvironmentBuildError(
            f"the model's {need.flavor} flavor runs on Java {need.major}, and no java is "
            f"installed (none on PATH, no JAVA_HOME): {install}"
        )
    found = installed_java_major(java)
    if found is None or found < need.major:
        what = f"Java {found}" if found is not None else "a java whose version is unknown"
        raise EnvironmentBuildError(
            f"the model's {need.flavor} flavor runs on Java {need.major}, but {java} is "
            f"{what}: {install}"
        )
