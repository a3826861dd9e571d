"""``hdist gallery``: the committed page of tests/data/gallery is reproduced byte for byte from its results
directory; tiny real runs give a page that names the stand-in, counts sanity checks apart and regenerates
identically; a bad out= is one line, exit 2, nothing written.

The committed page is regenerated (after a deliberate change of the page's format) with
``python -m hdist.cli gallery results_dir=tests/data/gallery/results out=tests/data/gallery/expected``."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ROOT

FIXTURE = ROOT / "tests" / "data" / "gallery"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _fixture_results(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    return results


def test_gallery_reproduces_the_committed_page(cli, tmp_path):
    results = _fixture_results(tmp_path)
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    out = tmp_path / "gallery"
    shutil.copytree(FIXTURE / "expected", out)
    (out / "gone-stem.png").write_bytes(b"a stem an earlier gallery had")
    code, stdout, err = cli("gallery", f"results_dir={results}", f"out={out}")
    assert code == 0, err
    assert _files(out) == _files(FIXTURE / "expected")  # the stale stem's figure went too
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before  # nothing needed drawing
    assert "2 stem(s) with finished runs; 2 unreadable file(s) skipped" in stdout
    assert "adhoc/bad/config.yaml" in err and "huo17-fig1/zz/config.yaml" in err

    page = (out / "README.md").read_text()
    assert "| [thesis-fig6](#thesis-fig6) | paper | real, synthetic stand-in for covtype | 3 | 1 | 1 | 1 | 1 | 1 | " \
           "sanity 1/1, bench 0/1 |" in page
    assert "| covtype, 8 workers: CoCoA+ first | CoCoA+ first | CoCoA+ first | n/a (stand-in for covtype) |" in page
    paper, own = page.split("## thesis-fig6")[1].split("Sanity checks and benchmarks of hdist itself")
    assert "duality gap is non-negative" in own and "duality gap" not in paper
    assert "- hdist commit: 0123456789, 0123456789-dirty" in page  # from the runs' meta.json
    assert "- hdist commit: hdist 0.0.9 (no git)" in page  # a run an older hdist finished
    assert "- runs: 3 (its last `hdist reproduce`'s finished runs; 4 readable" in page
    assert str(tmp_path) not in page and (out / "thesis-fig6.png").read_bytes() == \
        (results / "figures" / "thesis-fig6.png").read_bytes()


def test_a_bad_claims_file_is_named_and_skipped(cli, tmp_path):
    results = _fixture_results(tmp_path)
    (results / "huo17-fig1" / "claims.json").write_text("{not json")
    code, _, err = cli("gallery", f"results_dir={results}", f"out={tmp_path / 'g'}")
    page = (tmp_path / "g" / "README.md").read_text()
    assert code == 0 and "huo17-fig1/claims.json: cannot be read" in page and "huo17-fig1/claims.json" in err
    assert "| [thesis-fig6](#thesis-fig6) | paper |" in page


@pytest.mark.parametrize("out, words", [
    ("", ["out=", "empty"]),
    ("{file}", ["is a file", "allowed"]),
    ("{foreign}", ["did not write", "allowed"]),
])
def test_bad_out_is_one_line_and_writes_nothing(cli, tmp_path, out, words):
    results = _fixture_results(tmp_path)
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.md").write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = out.format(file=tmp_path / "file", foreign=tmp_path / "foreign")
    code, stdout, err = cli("gallery", f"results_dir={results}", f"out={out}")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words) and not stdout, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_bad_words_and_results_dir(cli, tmp_path):
    for args, word in ((["--redraw"], "--redraw"), (["huo17-fig1"], "huo17-fig1"),
                       ([f"results_dir={tmp_path / 'none'}"], "not a directory")):
        code, _, err = cli("gallery", *args, f"out={tmp_path / 'g'}")
        assert code == 2 and word in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "g").exists()


def test_gallery_of_tiny_runs_regenerates_byte_for_byte(cli, tmp_path):
    """One stand-in run of huo17-fig1 (paper claims) and thesis-fig11 (sanity checks only), smoke scale, serial:
    the gallery draws their missing figures, marks the stand-in, and a second gallery is byte-identical."""
    results, out = tmp_path / "results", tmp_path / "gallery"
    quick = ("scale=smoke", "progress=quiet", f"results_dir={results}")
    for args in (("experiment=huo17-fig1", "algo=sgd", "scale.epochs=1", "scale.n_train=128"),
                 ("experiment=thesis-fig11",)):
        code, _, err = cli("run", *args, *quick)
        assert code == 0, err
    code, stdout, err = cli("gallery", f"results_dir={results}", f"out={out}")
    assert code == 0 and "2 stem(s) with finished runs" in stdout, err
    first = _files(out)
    assert set(first) == {"README.md", "huo17-fig1.md", "huo17-fig1.png", "thesis-fig11.md", "thesis-fig11.png"}
    page = first["README.md"].decode()
    assert "| [huo17-fig1](#huo17-fig1) | smoke | synthetic stand-in for mnist | 1 | 0 | 0 | 0 | 3 | 1 | - |" in page
    assert "| [thesis-fig11](#thesis-fig11) | smoke | synthetic | 1 | 0 | 0 | 0 | 0 | 0 | sanity 2/2 |" in page
    huo17 = page.split("## huo17-fig1")[1].split("## thesis-fig11")[0]
    assert "n/a (stand-in for mnist)" in huo17 and "| PASS |" not in huo17 and "Sanity checks" not in huo17
    # the figure copied is the one hdist figures drew into the results directory
    assert first["huo17-fig1.png"] == (results / "figures" / "huo17-fig1.png").read_bytes()
    # again, and with the figure drawn afresh: the same bytes
    (results / "figures" / "thesis-fig11.png").unlink()
    code, _, err = cli("gallery", f"results_dir={results}", f"out={out}")
    assert code == 0, err
    assert _files(out) == first
