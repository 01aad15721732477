"""envkit info says which scoring payloads a model's environment reads (the rule that
`serve`, `predict` and `validate --input` share): DataFrame formats need pandas."""

from __future__ import annotations

import pytest

from envkit.deps.describe import payload_rule


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["envkit==0.1.0", "pandas==3.0", "numpy==2.0"], "every scoring format"),
        (["envkit==0.1.0", "cloudpickle==3.1"], "JSON instances and inputs, as Python data"),
        (["envkit==0.1.0", "numpy==2.0"], "JSON instances and inputs, as numpy arrays"),
    ],
)
def test_the_payload_rule_follows_what_the_model_records(lines, expected):
    assert payload_rule(lines).startswith(expected)


def test_info_shows_the_rule(tmp_path, capsys):
    import envkit.pyfunc
    from envkit.cli import main

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    envkit.pyfunc.save_model(tmp_path / "m", python_model=Echo())
    assert main(["info", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "payloads: JSON instances and inputs, as Python data" in out
    assert "need pandas, which the model does not record" in out
