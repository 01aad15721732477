"""Scan before load (issue 13): a model's pickles are scanned before anything unpickles them.

Real pickles, real subprocesses: the repro of the issue (a model.pkl whose ``__reduce__`` calls
``os.system``) must be refused by every entry point, and ``pwned`` must not appear.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envkit.pyfunc
import envkit.sklearn
from envkit.errors import ModelFormatError, UnsafeModelError
from envkit.models.scan import ModelTrust, ensure_safe, scan_model


class _Pwn:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Own:
    """A class of the model's own, importable: pickled by reference."""


def envkit_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "envkit", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


@pytest.fixture
def iris_models(tmp_path, iris, iris_pipeline):
    """The iris pipeline saved with each pickle-based serialization format."""
    X, _ = iris
    paths = {}
    for fmt in ("cloudpickle", "pickle"):
        paths[fmt] = tmp_path / f"iris_{fmt}"
        envkit.sklearn.save_model(
            iris_pipeline, paths[fmt], serialization_format=fmt, input_example=X.head(3)
        )
    return paths


@pytest.fixture
def pwned_model(tmp_path, iris, iris_pipeline):
    """The issue's repro: a saved model whose model.pkl runs ``touch <marker>`` when loaded."""
    X, _ = iris
    path = tmp_path / "M"
    envkit.sklearn.save_model(
        iris_pipeline, path, serialization_format="pickle", input_example=X.head(3)
    )
    marker = tmp_path / "pwned"
    with open(path / "model.pkl", "wb") as handle:
        pickle.dump(_Pwn(marker), handle)
    return path, marker


def test_envkit_saved_iris_models_scan_safe(iris_models):
    for fmt, path in iris_models.items():
        scan = scan_model(path)
        assert scan.verdict == "safe", (fmt, scan.to_dict())
        assert [f.path for f in scan.files] == ["model.pkl"]
        assert any(name.startswith("sklearn.") for name in scan.files[0].safe)
        envkit.sklearn.load_model(path)  # no trust needed
        envkit.pyfunc.load_model(path)


def test_a_cloudpickled_python_model_pickled_by_value_scans_safe(tmp_path):
    class AddOne(envkit.pyfunc.PythonModel):  # local: cloudpickle pickles it by value
        def predict(self, context, model_input, params=None):
            return [x + 1 for x in model_input]

    envkit.pyfunc.save_model(tmp_path / "m", python_model=AddOne())
    scan = scan_model(tmp_path / "m")
    assert scan.verdict == "safe", scan.to_dict()
    (entry,) = scan.files
    assert entry.path == "python_model.pkl"
    assert any(name.startswith("cloudpickle.") for name in entry.safe)
    assert envkit.pyfunc.load_model(tmp_path / "m").predict([1, 2]) == [2, 3]


def test_the_repro_is_refused_by_load_model_and_nothing_runs(pwned_model):
    path, marker = pwned_model
    for load in (envkit.pyfunc.load_model, envkit.sklearn.load_model):
        with pytest.raises(UnsafeModelError) as info:
            load(path)
        assert info.value.exit_code == 1
        assert info.value.path == "model.pkl"
        assert info.value.globals == ["posix.system"] or "os.system" in info.value.globals
        assert "model.pkl" in str(info.value) and "--trust-model" in str(info.value)
    assert not marker.exists()


def test_trust_model_loads_it(pwned_model):
    path, marker = pwned_model
    envkit.sklearn.load_model(path, trust_model=True)  # unpickling it ran the command
    assert marker.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["scan"],
        ["info"],
        ["validate", "--env-manager", "local"],
        ["predict", "--env-manager", "local", "--input", "{model}/serving_input_example.json"],
        ["infer"],
        ["serve", "--env-manager", "local", "--port", "0"],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_refuses_the_repro_with_exit_1(pwned_model, argv):
    path, marker = pwned_model
    command, *rest = argv
    rest = [arg.format(model=path) for arg in rest]
    proc = envkit_cli(command, str(path), *rest, cwd=path.parent)
    assert proc.returncode == 1, proc.stderr
    if command != "scan":
        assert "refusing to load model.pkl" in proc.stderr
        assert "posix.system" in proc.stderr or "os.system" in proc.stderr
    assert not marker.exists()
    assert not (path.parent / "pwned").exists()


def test_validate_with_trust_model_runs_it(pwned_model):
    path, marker = pwned_model
    proc = envkit_cli(
        "validate", str(path), "--env-manager", "local", "--trust-model", cwd=path.parent
    )
    assert marker.exists(), proc.stderr
    assert proc.returncode == 1  # the "model" it unpickles to is an int: it cannot predict


def test_scan_cli_reports_per_file_in_json(pwned_model, iris_models):
    path, _ = pwned_model
    proc = envkit_cli("scan", str(path), "--format", "json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["verdict"] == "dangerous"
    (entry,) = data["files"]
    assert entry["path"] == "model.pkl" and entry["verdict"] == "dangerous"
    assert entry["dangerous"] in (["posix.system"], ["os.system"])
    proc = envkit_cli("scan", str(iris_models["cloudpickle"]))
    assert proc.returncode == 0, proc.stderr
    assert "model.pkl: safe" in proc.stdout and "verdict: safe" in proc.stdout


def test_info_shows_the_scan(iris_models):
    proc = envkit_cli("info", str(iris_models["pickle"]))
    assert proc.returncode == 0, proc.stderr
    assert "pickle scan: safe (1 pickle file)" in proc.stdout


def test_an_unreadable_pickle_is_exit_2_for_scan(iris_models):
    path = iris_models["pickle"]
    (path / "model.pkl").write_bytes(b"\x80\x04this is not a pickle")
    proc = envkit_cli("scan", str(path))
    assert proc.returncode == 2
    assert "model.pkl: unreadable" in proc.stdout
    # Loading leaves it to the loader, whose error names the file (nothing unpickled).
    assert ensure_safe(path, ModelTrust()) is not None
    with pytest.raises(ModelFormatError, match=r"model\.pkl cannot be deserialized"):
        envkit.sklearn.load_model(path)


def test_artifacts_and_unknown_globals(tmp_path):
    """Artifacts are scanned too; a global outside the safe list is reported, not refused."""
    artifact = tmp_path / "lookup.joblib"
    with open(artifact, "wb") as handle:
        pickle.dump({"table": Path("x")}, handle)
    bad = tmp_path / "bad.bin"
    with open(bad, "wb") as handle:
        pickle.dump(_Pwn(tmp_path / "pwned"), handle, protocol=4)

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    envkit.pyfunc.save_model(
        tmp_path / "m", python_model=Echo(), artifacts={"lookup": str(artifact)}
    )
    scan = scan_model(tmp_path / "m")
    by_path = {f.path: f for f in scan.files}
    assert by_path["artifacts/lookup.joblib"].verdict == "safe"
    envkit.pyfunc.save_model(tmp_path / "m2", python_model=Echo(), artifacts={"bad": str(bad)})
    scan = scan_model(tmp_path / "m2")
    assert {f.path: f.verdict for f in scan.files}["artifacts/bad.bin"] == "dangerous"
    with pytest.raises(UnsafeModelError, match=r"artifacts/bad\.bin"):
        envkit.pyfunc.load_model(tmp_path / "m2")
    assert not (tmp_path / "pwned").exists()
    # A class of the model's own, pickled by reference: unknown, loaded all the same.
    (tmp_path / "m3").mkdir()
    with open(tmp_path / "m3" / "own.pkl", "wb") as handle:
        pickle.dump(_Own(), handle)
    (entry,) = scan_model(tmp_path / "m3").files
    assert entry.verdict == "unknown" and entry.unknown == [f"{__name__}._Own"]
    assert scan_model(tmp_path / "m3", trusted_types=[f"{__name__}._Own"]).verdict == "safe"
    assert scan_model(tmp_path / "m3", trusted_types=[f"{__name__}.*"]).verdict == "safe"


def test_trust_type_accepts_a_flagged_global(tmp_path, iris, iris_pipeline):
    """A FunctionTransformer over functools.partial: partial is on the blocklist (it can wrap
    any callable); --trust-type functools.partial accepts this model without trusting all."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, _ = iris
    clip = FunctionTransformer(functools.partial(np.clip, a_min=0.0, a_max=7.0))
    model = make_pipeline(clip, iris_pipeline)
    path = tmp_path / "clipped"
    envkit.sklearn.save_model(model, path, serialization_format="pickle", input_example=X.head(3))

    with pytest.raises(UnsafeModelError, match="functools.partial"):
        envkit.sklearn.load_model(path)
    loaded = envkit.sklearn.load_model(path, trusted_types=["functools.partial"])
    np.testing.assert_array_equal(loaded.predict(X.head(5)), model.predict(X.head(5)))

    assert envkit_cli("scan", str(path)).returncode == 1
    proc = envkit_cli("scan", str(path), "--trust-type", "functools.partial")
    assert proc.returncode == 0, proc.stdout
    assert envkit_cli("info", str(path)).returncode == 1
    proc = envkit_cli("info", str(path), "--trust-type", "functools.partial")
    assert proc.returncode == 0, proc.stderr


def test_trust_reaches_the_models_process_through_the_environment(monkeypatch, pwned_model):
    path, marker = pwned_model
    assert ModelTrust(True, ("a.b",)).environment() == {
        "ENVKIT_TRUST_MODEL": "1",
        "ENVKIT_TRUSTED_TYPES": "a.b",
    }
    monkeypatch.setenv("ENVKIT_TRUSTED_TYPES", "posix.system,os.system")
    assert ModelTrust.of().trusted_types == ("posix.system", "os.system")
    assert ensure_safe(path, ModelTrust.of()) is not None  # trusted by name: scanned, accepted
    assert ModelTrust.of(trusted_types=[]).trusted_types == ()  # explicit beats the variable
    assert not marker.exists()


def test_import_envkit_does_not_import_the_scanner():
    code = "import sys, envkit, envkit.pyfunc, envkit.sklearn; print('picklescan' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def own_class_model(tmp_path):
    """A pyfunc model whose artifact pickles a class of the model's own (by reference)."""
    artifact = tmp_path / "own.pkl"
    with open(artifact, "wb") as handle:
        pickle.dump(_Own(), handle)

    class Echo(envkit.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    path = tmp_path / "own_model"
    envkit.pyfunc.save_model(path, python_model=Echo(), artifacts={"own": str(artifact)})
    return path, f"{_Own.__module__}._Own"


def test_strict_scan_refuses_a_models_own_class_unless_it_is_listed(monkeypatch, own_class_model):
    path, own = own_class_model
    assert ensure_safe(path, ModelTrust()) is not None  # default: reported, loaded
    with pytest.raises(UnsafeModelError, match=rf"{own}.*strict scan.*--trust-type") as caught:
        ensure_safe(path, ModelTrust(strict=True))
    assert caught.value.exit_code == 1
    assert ensure_safe(path, ModelTrust(trusted_types=(own,), strict=True)) is not None
    assert ensure_safe(path, ModelTrust(True, strict=True)) is None  # --trust-model: no scan
    scan = scan_model(path, strict=True)
    assert scan.verdict == "unknown" and scan.exit_code == 1 and scan.to_dict()["strict"]
    assert scan_model(path).exit_code == 0

    # The variable is how a model's own process (and load_model) learns it.
    assert ModelTrust(strict=True).environment() == {"ENVKIT_STRICT_SCAN": "1"}
    envkit.pyfunc.load_model(path)
    monkeypatch.setenv("ENVKIT_STRICT_SCAN", "1")
    with pytest.raises(UnsafeModelError, match=own):
        envkit.pyfunc.load_model(path)
    envkit.pyfunc.load_model(path, trusted_types=[own])


def test_strict_scan_on_the_command_line(own_class_model):
    path, own = own_class_model
    assert envkit_cli("scan", str(path)).returncode == 0
    proc = envkit_cli("scan", str(path), "--strict-scan", "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["verdict"] == "unknown"
    assert envkit_cli("scan", str(path), "--strict-scan", "--trust-type", own).returncode == 0
    assert envkit_cli("info", str(path), "--strict-scan").returncode == 1
    # validate refuses on the host, before building anything: one line, exit 1.
    proc = envkit_cli("validate", str(path), "--strict-scan")
    assert proc.returncode == 1, proc.stderr
    assert own in proc.stderr and "strict scan" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_the_pickles_inside_zip_archives_are_scanned_whatever_the_suffix(tmp_path):
    """torch.save's layout (``<name>/data.pkl`` beside raw tensor bytes, in a file named
    ``.pth``), and a zip inside a zip (torch.export's ``sample_inputs/model.pt``), built here
    without torch: a dangerous global in either is found and named by member."""
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Pwn(marker), protocol=2)
    model = tmp_path / "m"
    (model / "data").mkdir(parents=True)
    (model / "data" / "model.pth").write_bytes(
        _zip({"model/data.pkl": evil, "model/data/0": b"\x80\x02\x00\x01", "model/version": b"3"})
    )
    inner = _zip({"archive/data.pkl": evil})
    (model / "data" / "model.pt2").write_bytes(_zip({"m/data/sample_inputs/model.pt": inner}))
    (model / "data" / "plain.zip").write_bytes(_zip({"readme.txt": b"no pickles"}))

    scan = scan_model(model)
    assert sorted(f.path for f in scan.dangerous) == [
        "data/model.pt2:m/data/sample_inputs/model.pt:archive/data.pkl",
        "data/model.pth:model/data.pkl",
    ]
    assert all(f.dangerous == ["posix.system"] for f in scan.dangerous)
    assert len(scan.files) == 2  # the raw tensor bytes and the plain zip are not pickles
    with pytest.raises(UnsafeModelError, match=r"data/model\.pt"):
        ensure_safe(model, ModelTrust())
    assert not marker.exists()


def test_a_broken_zip_is_unreadable_not_skipped(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.pth").write_bytes(b"PK\x03\x04 truncated")
    (bad,) = scan_model(model).files
    assert bad.path == "model.pth" and bad.verdict == "unreadable"


def test_a_pickle_member_too_big_to_read_is_unreadable_not_read(tmp_path, monkeypatch):
    """A zip bomb's member would fill the memory: its size in the archive's directory is
    checked before it is read (the limit lowered here: a real 1 GiB member is no unit test)."""
    import envkit.models.scan as scan_module

    monkeypatch.setattr(scan_module, "MAX_ZIP_MEMBER_BYTES", 64)
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.pth").write_bytes(_zip({"model/data.pkl": pickle.dumps(list(range(100)))}))
    (big,) = scan_model(model).files
    assert big.verdict == "unreadable"
    assert "model/data.pkl is" in str(big.error) and "more than the 64" in str(big.error)


@pytest.mark.parametrize(
    ("module", "name", "verdict"),
    [
        ("torch._utils", "_rebuild_tensor_v2", "safe"),
        ("torch", "FloatStorage", "safe"),
        ("torch.nn.modules.linear", "Linear", "safe"),
        ("torch.storage", "_load_from_bytes", "unknown"),  # it calls torch.load
        ("torch", "load", "unknown"),
        ("torch.hub", "load", "unknown"),
    ],
)
def test_torch_data_globals_are_safe_and_nothing_else_of_torch(module, name, verdict):
    from envkit.models.scan import classify

    assert classify(module, name, False, ModelTrust()) == verdict


def _keras_archive(path: Path, layers: list[dict]) -> Path:
    """A ``.keras`` file as Keras 3 writes it (config.json, metadata.json, model.weights.h5),
    written by hand: the scan reads its config, never loads it."""
    import zipfile

    config = {"class_name": "Sequential", "config": {"layers": layers}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n")
    return path


_LAMBDA_LAYER = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {"function": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}}},
}
_DENSE_LAYER = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}


def test_a_keras_lambdas_bytecode_is_dangerous_and_can_be_trusted_by_name(tmp_path):
    from envkit.models.scan import KERAS_LAMBDA

    (tmp_path / "data").mkdir()
    _keras_archive(tmp_path / "data" / "model.keras", [_DENSE_LAYER, _LAMBDA_LAYER])
    scan = scan_model(tmp_path)
    assert scan.verdict == "dangerous" and scan.exit_code == 1
    assert [(f.path, f.dangerous) for f in scan.files] == [
        ("data/model.keras:config.json", [KERAS_LAMBDA])
    ]
    with pytest.raises(UnsafeModelError, match=r"data/model\.keras:config\.json"):
        ensure_safe(tmp_path, ModelTrust())
    assert scan_model(tmp_path, [KERAS_LAMBDA]).verdict == "safe"
    ensure_safe(tmp_path, ModelTrust(trusted_types=(KERAS_LAMBDA,)))


def test_a_keras_archive_without_lambdas_is_safe_and_other_zips_are_not_read_as_keras(tmp_path):
    import zipfile

    _keras_archive(tmp_path / "model.keras", [_DENSE_LAYER])
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "__lambda__"}))  # no metadata
    scan = scan_model(tmp_path)
    assert scan.verdict == "safe"
    assert [f.path for f in scan.files] == ["model.keras:config.json"]


def test_a_keras_config_that_is_not_json_is_unreadable(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", "{not json")
    scan = scan_model(tmp_path)
    assert scan.verdict == "unreadable" and scan.exit_code == 2
