"""envkit.sandbox.provision: a model turned into a ready environment, the one path that
validate, predict, serve and build-docker take."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_provision_builds_once_and_runs_commands_in_the_environment(double_model, shared_cache):
    from envkit.sandbox.provision import ProvisionOptions, provision

    options = ProvisionOptions(env_manager="uv", cache_dir=shared_cache)
    with provision(double_model, options) as ready:
        assert ready.isolated and ready.backend.name == "uv"
        assert ready.python.exact is True
        outcome = ready.run(["python", "-c", "import sys, envkit; print(sys.prefix)"], timeout=60)
        assert outcome.ok, outcome.stderr
        assert outcome.stdout.strip() == str(ready.environment.path)
        assert any(r.startswith("envkit") for r in ready.spec.requirements)
        first_key = ready.cache.key
    with provision(double_model.as_uri(), options) as again:  # a file:// URI too
        assert again.cache.hit and again.cache.key == first_key


def test_the_serve_extra_is_a_spec_of_its_own(double_model, shared_cache):
    from envkit.sandbox.checks import check_model
    from envkit.sandbox.provision import plan_environment

    model = check_model(double_model)
    plain = plan_environment(double_model, model, env_manager="uv", cache_root=shared_cache)
    serving = plan_environment(
        double_model, model, env_manager="uv", envkit_extras=("serve",), cache_root=shared_cache
    )
    assert any(r.startswith("envkit[serve]") for r in serving.spec.requirements)
    assert not any(r.startswith("envkit[") for r in plain.spec.requirements)
    assert plain.spec.key != serving.spec.key
