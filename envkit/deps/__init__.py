"""Capture, record and check a model's environment (requirements, env var names).

Nothing is imported here, so that ``import envkit`` stays light. The pieces:

* :mod:`envkit.deps.capture` decides a model's requirements at save time
  (``check_user_requirements``, ``capture_environment``, ``decide_requirements``);
* :mod:`envkit.deps.imports` runs the capture subprocess (:mod:`envkit.deps._child`) and
  decides which distributions the captured imports need;
* :mod:`envkit.deps.distributions` maps imported files to installed distributions;
* :mod:`envkit.deps.provenance` reads and writes ``requirements.provenance.json``;
* :mod:`envkit.deps.envvars` handles ``environment_variables.txt``;
* :mod:`envkit.deps.envfiles` reads and writes MLflow's environment file formats;
* :mod:`envkit.deps.requirements` is the one parser of requirements files (includes, options);
* :mod:`envkit.deps.recorded` is the one reader of a model's recorded environment
  (``RecordedEnvironment``: which file wins, requirements, constraints, the lock);
* :mod:`envkit.deps.mismatch` compares recorded requirements with the running interpreter;
* :mod:`envkit.deps.update`, :mod:`envkit.deps.infer`, :mod:`envkit.deps.lock` and
  :mod:`envkit.deps.report` change, re-capture, lock and describe a saved model's requirements;
* :mod:`envkit.deps.describe` summarizes a model directory for ``envkit info``.
"""
