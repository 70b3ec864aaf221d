"""pytest-benchmark suite. ``pytest benchmarks/ --benchmark`` runs it; plain ``pytest`` does not.

On a GPU every case runs at its full size; without one, a tiny smoke version runs the same code
through the Triton interpreter so the suite cannot rot. ``--write-results`` writes one JSON file per
suite (``rmsnorm.json``, ...) under ``benchmarks/results/<gpu-name>/``, rewritten after every test, so a
run killed by a timeout keeps every row that finished.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
if os.environ.get("TRITON_INTERPRET") == "1":
    from tests.interpreter import patch_interpreter

    patch_interpreter()

from benchmarks import common  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--benchmark", action="store_true", help="run the march benchmark suite")
    parser.addoption("--write-results", action="store_true",
                     help="write benchmarks/results/<gpu>/<suite>.json from this run")
    parser.addoption("--results-dir", default=None, help="override the results folder")


def pytest_configure(config):
    common.WRITE_TO.update(enabled=bool(config.getoption("--benchmark") and config.getoption("--write-results")),
                           dir=config.getoption("--results-dir"))


def pytest_collection_modifyitems(config, items):
    if config.getoption("--benchmark"):
        return
    skip = pytest.mark.skip(reason="benchmarks run only with --benchmark")
    for item in items:
        item.add_marker(skip)


def pytest_runtest_logfinish(nodeid, location):
    common.flush()


def pytest_sessionfinish(session, exitstatus):
    for path in common.flush():
        print(f"\nwrote {path}")
