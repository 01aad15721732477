"""Who imported what, as the capture process records it (envkit.deps._child)."""

from __future__ import annotations

import builtins

import envkit.deps._child as child


def _import_as_c_code_does(name: str) -> None:
    # CPython's PyImport_Import (what an extension module calls to import) passes the globals
    # of the innermost Python frame: while the recorder's own __import__ runs the import that
    # initialises the extension (matplotlib.ft2font importing matplotlib._api), that frame is
    # the recorder's, in envkit.deps._child.
    builtins.__import__(name, vars(child), None, (), 0)


def test_an_import_seen_through_the_recorders_own_frame_is_not_the_models():
    recorder = child._Recorder(record_env_vars=False)
    recorder.start()
    try:
        _import_as_c_code_does("email.mime")
    finally:
        recorder.stop()
    importers = {importer for name, importer, _ in recorder.statements if name == "email.mime"}
    assert importers == {__name__}
    assert child.ON_BEHALF_OF_MODEL not in importers
