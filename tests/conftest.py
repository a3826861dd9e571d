"""Shared fixtures: run the CLI in-process (fast) or in a subprocess (exit codes, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch, tmp_path_factory):
    # Tests never read ../shared or the user's cache, and never touch the network.
    monkeypatch.setenv("HDIST_DATA", str(tmp_path_factory.mktemp("empty-data-root")))
    monkeypatch.setenv("HDIST_OFFLINE", "1")


@pytest.fixture
def cli(capsys):
    """Call ``hdist`` in this process: returns (exit code, stdout, stderr)."""
    from hdist.cli import main

    def call(*args: str):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return call


@pytest.fixture
def one_torch_thread():
    """Torch's intra-op pool at one thread for the test: the same arithmetic in every world (reductions may
    split differently with more threads), and no oversubscription of a loaded 2-core machine by tiny ops."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run_subprocess(*args: str, env: dict | None = None, timeout: float = 120, cwd: Path | None = None):
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "hdist.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=cwd or ROOT)


@pytest.fixture
def sub():
    return run_subprocess
