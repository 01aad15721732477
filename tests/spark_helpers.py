"""Spark for the tests: one way to configure a SparkSession (fixtures and job scripts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# pyspark 4.0 calls pandas 3 with its deprecated copy= keyword and leaves py4j's result sockets
# to the garbage collector: pyspark's warnings, not envkit's.
SPARK_WARNINGS = [
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def spark_session_builder(master: str):
    """A SparkSession builder for the tests: small, quiet, on the loopback address only, its
    Python workers running this interpreter with envkit importable from this checkout."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    repo = str(Path(__file__).resolve().parent.parent)
    return (
        SparkSession.builder.master(master)
        .appName("envkit-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.executorEnv.PYTHONPATH", repo)
        .config("spark.executorEnv.SPARK_LOCAL_IP", "127.0.0.1")
    )
