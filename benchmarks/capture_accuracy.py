"""How accurately requirement capture records what a model needs: envkit against MLflow.

A corpus of small custom models, each with the distributions it must record (import name !=
distribution name, namespace packages, lazy imports in predict and in load_context, dynamic
``importlib`` imports, imports in threads, code_paths helpers (a file, a directory, a package),
artifacts loaded with joblib, models without an example, a failing example, optional imports
guarded by try/except, a library's own optional import of a distribution it does not declare,
a distribution without ``top_level.txt``, an editable install, a local ``+cpu`` version).
Each model is saved by ``envkit.pyfunc.save_model`` here and by ``mlflow.pyfunc.save_model``
in MLflow's own virtualenv (the test suite's pinned MLflow), from
the same source, and what each wrote to ``requirements.txt`` is compared with what it must
record:

    recall     required distributions recorded, by name / required distributions
    precision  recorded distributions that are not extras / recorded distributions

An *extra* is what is neither required nor in the installed dependency closure of what is
required (the tool itself included), so that a third party's new release cannot move the
figure. Most distributions are the benchmark's own tiny wheels (``tests/local_wheels.py``),
installed for both tools into one directory on ``PYTHONPATH``; the real ones (scikit-learn,
joblib, pandas, PyYAML) are the same versions on both sides. ``recall*`` also counts a required
distribution that is not recorded by name but installed with one that is (MLflow drops a
requirement that another recorded one declares: it gets installed, unpinned).

    python benchmarks/capture_accuracy.py [--mlflow-python PATH] [--only NAME ...] [--json]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# -- the benchmark's own distributions -----------------------------------------------------------

LEAF = "VERSION = '1.0.0'\n"
# (distribution, version) -> (files, requires, top_level.txt or None for none)
WHEELS: dict[tuple[str, str], tuple[dict[str, str], tuple[str, ...], tuple[str, ...] | None]] = {
    ("ektest-leaf", "1.0.0"): ({"ekleaf/__init__.py": LEAF}, (), None),  # no top_level.txt
    ("ektest-top", "1.0.0"): (
        {"ektop/__init__.py": "import ekleaf\nVERSION = '1.0.0'\n"},
        ("ektest-leaf>=1",),
        ("ektop",),
    ),
    ("ektest-ns-alpha", "1.0.0"): ({"ekns/alpha/__init__.py": LEAF}, (), None),
    ("ektest-ns-beta", "1.0.0"): ({"ekns/beta/__init__.py": LEAF}, (), None),
    ("ektest-import-name", "1.0.0"): ({"ekname/__init__.py": LEAF}, (), ("ekname",)),
    ("ektest-lazy", "1.0.0"): ({"eklazy/__init__.py": LEAF}, (), ("eklazy",)),
    ("ektest-ctx", "1.0.0"): ({"ekctx/__init__.py": LEAF}, (), ("ekctx",)),
    ("ektest-dyn", "1.0.0"): ({"ekdyn/__init__.py": LEAF}, (), ("ekdyn",)),
    ("ektest-dunder", "1.0.0"): ({"ekdunder/__init__.py": LEAF}, (), ("ekdunder",)),
    ("ektest-thread", "1.0.0"): ({"ekthread/__init__.py": LEAF}, (), ("ekthread",)),
    ("ektest-help", "1.0.0"): ({"ekhelp/__init__.py": LEAF}, (), ("ekhelp",)),
    ("ektest-opt", "1.0.0"): ({"ekopt/__init__.py": LEAF}, (), ("ekopt",)),
    ("ektest-noex", "1.0.0"): ({"eknoex/__init__.py": LEAF}, (), ("eknoex",)),
    ("ektest-fail", "1.0.0"): ({"ekfail/__init__.py": LEAF}, (), ("ekfail",)),
    # a library that imports an undeclared distribution when it happens to be installed
    ("ektest-lib", "1.0.0"): (
        {"eklib/__init__.py": "try:\n    import ekextra\nexcept ImportError:\n    pass\n"},
        (),
        ("eklib",),
    ),
    ("ektest-extra", "1.0.0"): ({"ekextra/__init__.py": LEAF}, (), ("ekextra",)),
    ("ektest-cpu", "1.0.0+cpu"): ({"ekcpu/__init__.py": LEAF}, (), ("ekcpu",)),
    ("ektest-pickled", "1.0.0"): (
        {"ekpickled/__init__.py": "class Box:\n    def __init__(self, n=1):\n        self.n = n\n"},
        (),
        ("ekpickled",),
    ),
}
EDITABLE = ("ektest-editable", "1.0.0", "ekedit")


def build_site(work: Path) -> list[str]:
    """Install the wheels into ``work/site`` (uv, offline) and fake an editable install whose
    source lives in ``work/editable-src``; returns the PYTHONPATH entries for both tools."""
    sys.path.insert(0, str(ROOT / "tests"))
    from local_wheels import LocalIndex, build_wheel

    wheels = work / "wheels"
    wheels.mkdir()
    index = LocalIndex(wheels)
    for (name, version), (files, requires, top_level) in WHEELS.items():
        build_wheel(wheels, name, version, files, requires=requires, top_level=top_level)
    site = work / "site"
    index.install(site, *(f"{n}=={v}" for n, v in WHEELS))
    # An editable install as pip writes one (PEP 660/610): metadata in site-packages, the code
    # in the project directory, found through a path entry (here on PYTHONPATH, as a .pth
    # file would add it).
    name, version, module = EDITABLE
    src = work / "editable-src"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(LEAF)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(module + "\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "direct_url.json").write_text(
        json.dumps({"url": src.as_uri(), "dir_info": {"editable": True}})
    )
    (info / "RECORD").write_text(
        "".join(f"{info.name}/{f},,\n" for f in ("METADATA", "top_level.txt", "INSTALLER",
                                                 "direct_url.json", "RECORD"))
    )  # fmt: skip
    return [str(site), str(src)]


# -- the corpus ----------------------------------------------------------------------------------

DATAFRAME = "pd.DataFrame({'x': [1.0, 2.0]})"
HELPER = "import ekhelp\n\ndef fmt(x):\n    return f'{x}@{ekhelp.VERSION}'\n"


@dataclass
class Case:
    """One model. ``body``: the class's methods (``{pyfunc}`` is the tool's pyfunc module);
    ``kind``: ``code`` (models from code) or ``pickle`` (a class pickled by value); ``files``:
    helper files written next to it, of which ``code_paths`` are shipped; ``required``: what it
    must record (beyond the tool itself)."""

    name: str
    what: str
    body: str
    required: list[str]
    kind: str = "pickle"
    example: str | None = None
    header: str = ""
    files: dict[str, str] = field(default_factory=dict)
    code_paths: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> "joblib" | "pickle"


def _predict(lines: str, returns: str = "model_input") -> str:
    body = textwrap.indent(textwrap.dedent(lines).strip(), "    ")
    return f"def predict(self, context, model_input, params=None):\n{body}\n    return {returns}\n"


def _load(lines: str) -> str:
    body = textwrap.indent(textwrap.dedent(lines).strip(), "    ")
    return f"def load_context(self, context):\n{body}\n"


PASS = _predict("pass")
PICKLE = ["cloudpickle"]  # what loading a pickled PythonModel needs
FRAME = ["pandas"]  # the model is given a DataFrame

CORPUS = [
    Case("import-name-yaml", "import name != distribution (yaml)",
         _load("import yaml") + PASS, ["pyyaml", *PICKLE]),
    Case("import-name-sklearn", "import name != distribution (sklearn)",
         _load("import sklearn.preprocessing") + PASS, ["scikit-learn", *PICKLE]),
    Case("import-name-wheel", "import name != distribution (ektest wheel)",
         _load("import ekname") + PASS, ["ektest-import-name", *PICKLE]),
    Case("namespace-one-portion", "namespace package, one of two portions",
         _load("import ekns.alpha") + PASS, ["ektest-ns-alpha", *PICKLE]),
    Case("namespace-both-portions", "namespace package, both portions (from code)",
         _load("import ekns.alpha\nimport ekns.beta") + PASS,
         ["ektest-ns-alpha", "ektest-ns-beta"], kind="code"),
    Case("lazy-predict", "lazy import in predict",
         _predict("import eklazy"), ["ektest-lazy", *PICKLE, *FRAME], example=DATAFRAME),
    Case("lazy-load-context", "lazy import in load_context",
         _load("import ekctx") + PASS, ["ektest-ctx", *PICKLE]),
    Case("dynamic-importlib", "importlib.import_module of a computed name",
         _predict("import importlib\nimportlib.import_module('ek' + 'dyn')"),
         ["ektest-dyn", *PICKLE, *FRAME], example=DATAFRAME),
    Case("dynamic-dunder", "__import__ with a literal name",
         _predict("__import__('ekdunder')"), ["ektest-dunder", *PICKLE, *FRAME],
         example=DATAFRAME),
    Case("thread-import", "import in a thread started by predict",
         _predict("import threading\nt = threading.Thread(target=lambda: __import__('ekthread'))"
                  "\nt.start()\nt.join()"),
         ["ektest-thread", *PICKLE, *FRAME], example=DATAFRAME),
    Case("code-paths-file", "code_paths helper file imported in predict (the issue's miss)",
         _predict("from fmt_helper import fmt", "[fmt(v) for v in model_input['x']]"),
         ["ektest-help", *FRAME], kind="code", example=DATAFRAME,
         files={"fmt_helper.py": HELPER}, code_paths=["fmt_helper.py"]),
    Case("code-paths-directory", "code_paths directory (namespace) imported in predict",
         _predict("from helpers.fmt_helper import fmt", "[fmt(v) for v in model_input['x']]"),
         ["ektest-help", *FRAME], kind="code", example=DATAFRAME,
         files={"helpers/fmt_helper.py": HELPER}, code_paths=["helpers"]),
    Case("code-paths-package", "code_paths package imported in predict (pickled model)",
         _predict("from fmtpkg import fmt", "[fmt(v) for v in model_input['x']]"),
         ["ektest-help", *PICKLE, *FRAME], example=DATAFRAME,
         files={"fmtpkg/__init__.py": "from fmtpkg.impl import fmt\n", "fmtpkg/impl.py": HELPER},
         code_paths=["fmtpkg"]),
    Case("joblib-artifact", "a scikit-learn artifact loaded with joblib",
         _load("import joblib\nself.clf = joblib.load(context.artifacts['clf'])")
         + _predict("pass", "self.clf.predict(model_input[['x']])"),
         ["scikit-learn", "joblib", *PICKLE, *FRAME], example=DATAFRAME,
         artifacts={"clf": "joblib"}),
    Case("pickle-artifact-lazy", "an artifact pickled with an installed class, read in predict",
         _predict("import pickle\nwith open(context.artifacts['box'], 'rb') as f:\n"
                  "    pickle.load(f)"),
         ["ektest-pickled"], kind="code", artifacts={"box": "pickle"}),
    Case("no-example-code", "no input example, import in predict (from code)",
         _predict("import eknoex"), ["ektest-noex"], kind="code"),
    Case("no-example-pickle", "no input example, import in predict (pickled by value)",
         _predict("import eknoex"), ["ektest-noex", *PICKLE]),
    Case("no-example-helper", "no input example, code_paths helper imported in predict",
         _predict("from fmt_helper import fmt", "[fmt(v) for v in model_input]"),
         ["ektest-help"], kind="code", files={"fmt_helper.py": HELPER},
         code_paths=["fmt_helper.py"]),
    Case("failing-example", "the input example fails before predict's import",
         _predict("model_input['missing']\nimport ekfail"), ["ektest-fail", *FRAME],
         kind="code", example=DATAFRAME),
    Case("optional-absent", "optional import guarded by try/except, not installed",
         _load("import yaml\ntry:\n    import ek_not_installed_anywhere\nexcept ImportError:\n"
               "    pass") + PASS, ["pyyaml", *PICKLE]),
    Case("optional-present", "optional import guarded by try/except, installed",
         _predict("try:\n    import ekopt\nexcept ImportError:\n    ekopt = None"),
         ["ektest-opt", *PICKLE, *FRAME], example=DATAFRAME),
    Case("library-optional-import", "a library's own optional import of an undeclared one",
         _load("import eklib") + PASS, ["ektest-lib", *PICKLE]),
    Case("no-top-level", "a distribution without top_level.txt",
         _load("import ekleaf") + PASS, ["ektest-leaf", *PICKLE]),
    Case("declared-dependency", "a distribution that imports the one it declares",
         _load("import ektop") + PASS, ["ektest-top", *PICKLE]),
    Case("editable", "an editable install",
         _load("import ekedit") + PASS, ["ektest-editable", *PICKLE]),
    Case("local-cpu-version", "a local +cpu version",
         _load("import ekcpu") + PASS, ["ektest-cpu", *PICKLE]),
]  # fmt: skip


# -- running one tool over the corpus ------------------------------------------------------------

WORKER = textwrap.dedent(
    r"""
    import json, logging, os, pickle, sys, textwrap, warnings
    from importlib import metadata
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    tool, corpus_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    import pandas as pd
    pyfunc = __import__(f"{tool}.pyfunc", fromlist=["save_model"])
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def names(path):
        found = []
        for line in open(os.path.join(path, "requirements.txt")).read().splitlines():
            line = line.strip()
            if not line or line.startswith(("-", "#")):
                continue
            try:
                found.append(str(canonicalize_name(Requirement(line).name)))
            except Exception:
                pass
        return sorted(set(found))

    def closure(start):
        seen, todo = set(), [str(canonicalize_name(n)) for n in start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            for line in requires:
                req = Requirement(line)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    todo.append(str(canonicalize_name(req.name)))
        return sorted(seen)

    def artifact(kind, path):
        if kind == "joblib":
            import joblib
            from sklearn.linear_model import LogisticRegression
            clf = LogisticRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]}), [0, 0, 1, 1])
            joblib.dump(clf, path)
        else:
            import ekpickled
            with open(path, "wb") as handle:
                pickle.dump(ekpickled.Box(3), handle)
            sys.modules.pop("ekpickled")
        return path

    results = {}
    for case in json.load(open(corpus_path)):
        name = case["name"]
        root = os.path.join(out, tool, name)
        os.makedirs(root)
        for relative, text in case["files"].items():
            os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
            open(os.path.join(root, relative), "w").write(text)
        source = (
            f"import {tool}.pyfunc as pyfunc\n{case['header']}\n"
            "class Model(pyfunc.PythonModel):\n" + textwrap.indent(case["body"], "    ")
        )
        if case["kind"] == "code":
            source += f"\nfrom {tool}.models import set_model\nset_model(Model())\n"
            model = os.path.join(root, "model_code.py")
            open(model, "w").write(source)
        else:
            namespace = {"__name__": f"bench_model_{name.replace('-', '_')}"}
            exec(compile(source, f"<{name}>", "exec"), namespace)
            model = namespace["Model"]()
        kwargs = {}
        if case["example"]:
            kwargs["input_example"] = eval(case["example"])
        if case["code_paths"]:
            kwargs["code_paths"] = [os.path.join(root, p) for p in case["code_paths"]]
        if case["artifacts"]:
            kwargs["artifacts"] = {
                key: artifact(kind, os.path.join(root, f"{key}.{kind}"))
                for key, kind in case["artifacts"].items()
            }
        target = os.path.join(root, "model")
        try:
            pyfunc.save_model(target, python_model=model, **kwargs)
            recorded, error = names(target), None
        except Exception as exc:
            recorded, error = [], f"{type(exc).__name__}: {exc}"[:300]
        results[name] = {
            "recorded": recorded,
            "error": error,
            "closure": closure(case["required"] + [tool]),
            "installed": closure(recorded),
        }
    print(json.dumps(results))
    """
)


def run_tool(tool: str, python: str, corpus: list[Case], work: Path, path: list[str]) -> dict:
    corpus_file = work / "corpus.json"
    corpus_file.write_text(json.dumps([asdict(c) for c in corpus]))
    entries = [*path] + ([str(ROOT)] if tool == "envkit" else [])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENVKIT_STRICT_CAPTURE")}
    env["PYTHONPATH"] = os.pathsep.join(entries)
    proc = subprocess.run(
        [python, "-c", WORKER, tool, str(corpus_file), str(work / "models")],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the {tool} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- figures -------------------------------------------------------------------------------------


@dataclass
class Score:
    required: int
    hits: int
    hits_or_installed: int
    recorded: int
    extras: list[str]
    missed: list[str]
    error: str | None

    @property
    def recall(self) -> float:
        return self.hits / self.required if self.required else 1.0

    @property
    def recall_installed(self) -> float:
        return self.hits_or_installed / self.required if self.required else 1.0

    @property
    def precision(self) -> float:
        return (self.recorded - len(self.extras)) / self.recorded if self.recorded else 1.0


def score(tool: str, case: Case, result: dict) -> Score:
    required = set(case.required)
    recorded = set(result["recorded"]) - {tool}
    closure = set(result["closure"])
    hits = required & recorded
    # a required distribution recorded by name, or installed with one that is (the closure of
    # what was recorded, as the tool's interpreter has it)
    installed = set(result["installed"])
    extras = sorted(recorded - required - closure)
    return Score(
        required=len(required),
        hits=len(hits),
        hits_or_installed=len(required & installed),
        recorded=len(recorded),
        extras=extras,
        missed=sorted(required - recorded),
        error=result["error"],
    )


def report(corpus: list[Case], results: dict[str, dict]) -> dict:
    rows = []
    totals: dict[str, dict[str, float]] = {}
    for tool, by_case in results.items():
        scores = [score(tool, case, by_case[case.name]) for case in corpus]
        required = sum(s.required for s in scores)
        recorded = sum(s.recorded for s in scores)
        totals[tool] = {
            "recall": sum(s.hits for s in scores) / required,
            "recall_installed": sum(s.hits_or_installed for s in scores) / required,
            "precision": (recorded - sum(len(s.extras) for s in scores)) / recorded,
            "models_with_full_recall": sum(s.hits == s.required for s in scores),
            "models": len(scores),
        }
        for case, s in zip(corpus, scores):
            rows.append({"tool": tool, "model": case.name, **asdict(s),
                         "recall": s.recall, "precision": s.precision})  # fmt: skip
    return {"totals": totals, "rows": rows}


def render(corpus: list[Case], data: dict) -> str:
    tools = list(data["totals"])
    by = {(r["tool"], r["model"]): r for r in data["rows"]}
    lines = [f"{'model':<26} " + "  ".join(f"{t + ' R/P':>13}" for t in tools) + "  notes"]
    for case in corpus:
        cells, notes = [], []
        for tool in tools:
            r = by[(tool, case.name)]
            cells.append(f"{r['recall']:>6.0%}/{r['precision']:<6.0%}")
            if r["missed"]:
                notes.append(f"{tool} missed {', '.join(r['missed'])}")
            if r["extras"]:
                notes.append(f"{tool} extra {', '.join(r['extras'])}")
            if r["error"]:
                notes.append(f"{tool} failed: {r['error']}")
        lines.append(f"{case.name:<26} " + "  ".join(f"{c:>13}" for c in cells) + "  "
                     + "; ".join(notes))  # fmt: skip
    lines.append("")
    for tool, t in data["totals"].items():
        lines.append(
            f"{tool:<7} recall {t['recall']:.1%} (recorded or installed with what is: "
            f"{t['recall_installed']:.1%}), precision {t['precision']:.1%}, "
            f"full recall on {t['models_with_full_recall']}/{t['models']} models"
        )
    return "\n".join(lines)


def mlflow_python() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import mlflow_venv_python

    return str(mlflow_venv_python())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlflow-python", help="MLflow's interpreter (default: the tests')")
    parser.add_argument("--only", nargs="*", help="model names to run")
    parser.add_argument("--no-mlflow", action="store_true", help="envkit only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    corpus = [c for c in CORPUS if not args.only or c.name in args.only]
    with tempfile.TemporaryDirectory(prefix="envkit-capture-accuracy-") as tmp:
        work = Path(tmp)
        path = build_site(work)
        results = {"envkit": run_tool("envkit", sys.executable, corpus, work, path)}
        if not args.no_mlflow:
            python = args.mlflow_python or mlflow_python()
            results["mlflow"] = run_tool("mlflow", python, corpus, work, path)
    data = report(corpus, results)
    print(json.dumps(data, indent=2) if args.json else render(corpus, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
