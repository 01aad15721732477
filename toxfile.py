"""tox plugin (loaded by tox 4 from the project root): find pyenv's interpreters.

pyenv's shims expose only the selected version, so ``py39``..``py313`` would not be found on a
machine where 3.9-3.13 are installed under ``$PYENV_ROOT/versions``. Putting those versions'
``bin`` directories at the end of PATH lets tox's (virtualenv's) discovery see them, without
changing which ``python`` comes first.
"""

from __future__ import annotations

import os
from pathlib import Path

root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
if root.is_dir():
    extra = [str(p / "bin") for p in sorted(root.iterdir()) if (p / "bin" / "python").exists()]
    os.environ["PATH"] = os.pathsep.join([os.environ.get("PATH", ""), *extra])
