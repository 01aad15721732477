"""The options of :func:`~envkit.sandbox.validate.validate` and
:func:`~envkit.sandbox.validate.predict`, built once from their public keywords."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envkit.errors import UsageError
from envkit.models.scan import ModelTrust
from envkit.sandbox.contain import ContainmentPolicy
from envkit.sandbox.provision import ProvisionOptions, quiet

__all__ = ["DEFAULT_TIMEOUT", "ProgressCallback", "ValidateOptions"]

DEFAULT_TIMEOUT = 300.0
ProgressCallback = Callable[[str, str], None]


# --loader: envkit's loader, MLflow's (installed in the environment), or envkit's for the flavors
# it knows and MLflow's for the others.
LOADERS = ("auto", "envkit", "mlflow")


@dataclass(frozen=True)
class ValidateOptions:
    """:func:`validate`'s and :func:`predict`'s options, built once from their keywords: how to
    provision the environment, and how to run the model in it."""

    provision: ProvisionOptions = field(default_factory=ProvisionOptions)
    timeout: float | None = DEFAULT_TIMEOUT
    extra_env: Mapping[str, str] = field(default_factory=dict)
    contain: ContainmentPolicy = field(default_factory=ContainmentPolicy)
    # Which loader the model's process uses: one of LOADERS (see envkit.sandbox.runner).
    loader: str = "auto"

    @classmethod
    def from_call(cls, arguments: Mapping[str, Any]) -> ValidateOptions:
        """The options from the arguments of a call of ``validate``/``predict`` (its
        ``locals()`` on entry), which take :meth:`from_keywords`' keywords."""
        import inspect

        names = inspect.signature(cls.from_keywords).parameters
        return cls.from_keywords(**{name: arguments[name] for name in names if name in arguments})

    @classmethod
    def from_keywords(
        cls,
        *,
        env_manager: str | None,
        python: str | None,
        overrides: Sequence[str] | None,
        pip_requirements_override: Sequence[str] | None,
        timeout: float | None,
        build_timeout: float | None,
        use_cache: bool,
        cache_dir: str | os.PathLike[str] | None,
        extra_env: Mapping[str, str] | None,
        extra_envs: Mapping[str, str] | None,
        progress: ProgressCallback | None,
        base_image: str | None,
        ca_bundle: str | None,
        contain: bool = True,
        pass_env: Sequence[str] = (),
        trust_model: bool = False,
        trusted_types: Sequence[str] = (),
        loader: str | None = None,
    ) -> ValidateOptions:
        """The options from the public keywords (MLflow's aliases ``pip_requirements_override``
        and ``extra_envs`` resolved; each checked: a bad one is a UsageError)."""
        from envkit._subprocess import check_timeout

        overrides = _one_of(
            "overrides", overrides, "pip_requirements_override", pip_requirements_override
        )
        if isinstance(overrides, str):
            raise UsageError("overrides must be a list of requirements, not a string")
        provision_options = ProvisionOptions(
            env_manager=env_manager or "uv",
            python=python,
            overrides=tuple(overrides or ()),
            build_timeout=build_timeout,
            use_cache=use_cache,
            cache_dir=cache_dir,
            backend_options={"base_image": base_image, "ca_bundle": ca_bundle},
            progress=progress or quiet,
            trust=ModelTrust.of(trust_model, trusted_types),
        )
        extra = _one_of("extra_env", extra_env, "extra_envs", extra_envs)
        if isinstance(pass_env, str):
            raise UsageError("pass_env must be a list of variable names, not a string")
        policy = ContainmentPolicy(enabled=contain, pass_env=tuple(pass_env))
        timeout = check_timeout(timeout, "--timeout")
        # The model's process loads (and scans) the model again: it gets the same trust.
        extra = {**dict(extra or {}), **provision_options.trust.environment()}
        loader = loader or "auto"
        if loader not in LOADERS:
            raise UsageError(f"loader must be one of {', '.join(LOADERS)}, not {loader!r}")
        return cls(provision_options, timeout, extra, policy, loader)


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """``value`` or ``alias_value`` (one option under envkit's name and MLflow's)."""
    if value and alias_value:
        raise UsageError(f"give {name} or {alias}, not both (they are the same option)")
    return value or alias_value
