"""What datasets hdist knows, and which of their files are present and intact.

:func:`describe_all` is what ``hdist data`` prints. It never downloads anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hdist.config import group_options
from hdist.data.root import KNOWN, REQUIRED, SUBDIRS, checksum_status, data_root, expected_path, find


def _file_entry(name: str, filename: str, cfg: dict, verify: bool) -> dict[str, Any]:
    path = find(name, filename, cfg)
    kf = KNOWN.get(name, {}).get(filename)
    entry: dict[str, Any] = {
        "file": filename,
        "path": str(path or expected_path(name, filename, cfg)),
        "present": path is not None,
        "expected_md5": kf.md5 if kf else None,
        "bytes": None,
        "checksum": "absent",
    }
    if path is None:
        if kf is not None and kf.archive and find(name, kf.archive, cfg) is not None:
            entry["in_archive"] = kf.archive  # resolve() would extract it from there
            entry["checksum"] = "in archive"
        return entry
    if path.is_dir():
        entry["checksum"] = "unverified"
        entry["entries"] = sum(1 for e in os.scandir(path) if e.is_dir())  # class folders
        return entry
    entry["bytes"] = path.stat().st_size
    if verify:
        status, _, actual = checksum_status(name, path)
        entry["checksum"], entry["actual_md5"] = status, actual
    else:
        entry["checksum"] = "unverified" if entry["expected_md5"] is None else "not checked"
    return entry


def _status(files: list[dict], groups: list[list[tuple[str, ...]]]) -> tuple[str, str]:
    """(overall present, overall checksum) of a dataset from its per-file entries."""
    by_name = {f["file"]: f for f in files}
    used = []
    for options in groups:
        opt = next((o for o in options if all(by_name[f]["present"] for f in o)), None)
        if opt is None:  # still fine when the first alternative can be extracted from its archive
            opt = next((o for o in options[:1] if all(by_name[f].get("in_archive") for f in o)), None)
            if opt is None:
                return "absent", "absent"
            used += [by_name[by_name[f]["in_archive"]] for f in opt]
            continue
        used += [by_name[f] for f in opt]
    checks = {f["checksum"] for f in used}
    for word in ("mismatch", "unverified", "not checked"):
        if word in checks:
            return "present", word
    return "present", "ok"


def describe(name: str, root: str | Path | None = None, *, verify: bool = True) -> dict[str, Any]:
    """One dataset's entry of :func:`describe_all`."""
    cfg = {"root": str(root)} if root is not None else {}
    groups = REQUIRED.get(name)
    if groups is None:
        return {"name": name, "source": "synthetic", "root": None, "files": [], "present": "generated",
                "checksum": "n/a", "folder": None}
    listed: list[str] = []
    for f in [f for options in groups for opt in options for f in opt] + list(KNOWN.get(name, {})):
        if f not in listed:
            listed.append(f)
    entries = [_file_entry(name, f, cfg, verify) for f in listed]
    present, checksum = _status(entries, groups)
    # show the files of the table, the first alternative of each requirement, and whatever is there
    in_groups = {f for options in groups for opt in options for f in opt}
    shown = {f for options in groups for f in options[0]} | (set(KNOWN.get(name, {})) - in_groups)
    files = [e for e in entries if e["present"] or e["file"] in shown]
    return {
        "name": name,
        "source": "real",
        "root": str(data_root(cfg)),
        "folder": str(data_root(cfg) / SUBDIRS.get(name, name)),
        "files": files,
        "present": present,
        "checksum": checksum,
    }


def describe_all(root: str | Path | None = None, *, verify: bool = True) -> list[dict[str, Any]]:
    """Every known dataset with its expected files, where they were looked for and their state.

    Each entry: ``name``; ``source`` (``real`` or ``synthetic``); ``root`` (the data root used)
    and ``folder``; ``files``, a list of ``{file, path, present, checksum, expected_md5,
    actual_md5, bytes}`` where ``checksum`` is ``ok``, ``mismatch``, ``unverified`` (no
    published md5), ``absent``, ``in archive`` (missing, but its archive is there and the
    loader will extract it) or ``not checked`` (``verify=False``: no hashing); and the
    dataset's overall ``present`` (``present``, ``absent`` or ``generated``) and ``checksum``
    (the worst state among the files the loader would use). ``root`` None = the usual lookup
    (``$HDIST_DATA``, else the per-user cache).
    """
    names = sorted(set(group_options("dataset")) | set(REQUIRED))  # the config's choices: no loader (torch) imported
    return [describe(n, root, verify=verify) for n in names]
