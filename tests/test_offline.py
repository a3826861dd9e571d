"""Missing data said once, clearly: the stand-in line, and no retry storm without a network."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

import pytest

from hdist.data import root as R
from hdist.types import ConfigError


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Downloads allowed (the suite turns them off), into an empty root; urlopen counted, never real."""
    monkeypatch.delenv(R.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(R.DATA_ENV, str(tmp_path))
    calls = []
    return tmp_path, calls


def _fail_with(monkeypatch, calls, exc):
    def urlopen(url, timeout=None):
        calls.append(url)
        raise exc

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


def test_no_network_is_remembered_for_an_hour(online, monkeypatch, capsys):
    root, calls = online
    _fail_with(monkeypatch, calls, urllib.error.URLError(OSError("Name or service not known")))
    with pytest.raises(ConfigError, match="offline"):
        R.resolve("mnist", "train-images-idx3-ubyte.gz")
    tried = len(calls)
    assert tried >= 1 and (root / R.NO_NETWORK).exists()
    with pytest.raises(ConfigError, match="offline"):
        R.resolve("mnist", "train-labels-idx1-ubyte.gz")  # another file, a rerun: no new attempt
    assert len(calls) == tried
    old = time.time() - R.NO_NETWORK_S - 1
    os.utime(root / R.NO_NETWORK, (old, old))  # an hour later it tries again
    with pytest.raises(ConfigError):
        R.resolve("mnist", "train-labels-idx1-ubyte.gz")
    assert len(calls) > tried


def test_a_server_error_is_not_taken_for_no_network(online, monkeypatch):
    root, calls = online
    _fail_with(monkeypatch, calls, urllib.error.HTTPError("http://x", 503, "unavailable", {}, None))
    with pytest.raises(ConfigError, match="download failed"):
        R.resolve("mnist", "train-images-idx3-ubyte.gz")
    assert not (root / R.NO_NETWORK).exists()


def test_an_offline_stand_in_is_said_in_one_line(cli, tmp_path):
    code, out, err = cli("run", "dataset=mnist", "dataset.fallback=synthetic", "scale=smoke", "progress=quiet",
                         f"results_dir={tmp_path}")
    assert code == 0, err
    root = os.environ[R.DATA_ENV]
    want = (f"[hdist] MNIST not found under {root} and cannot be downloaded (offline: HDIST_OFFLINE=1): "
            f"using the labelled synthetic stand-in")
    assert want in err.splitlines() and err.count("synthetic stand-in") == 1
    assert "downloading" not in err
