"""The JavaScript the console serves (and axe-core, which only the browser tests use) is the
pinned release its manifest names, unchanged: each file's SHA-256 matches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support import ROOT

MANIFESTS = (
    ROOT / "services/web/static/vendor/manifest.json",
    ROOT / "tests/e2e/axe/manifest.json",
)


def entries() -> list[tuple[Path, dict[str, str]]]:
    return [
        (manifest.parent, entry)
        for manifest in MANIFESTS
        for entry in json.loads(manifest.read_text())["files"]
    ]


@pytest.mark.parametrize(("folder", "entry"), entries(), ids=lambda v: getattr(v, "name", ""))
def test_each_vendored_file_is_the_pinned_release(folder: Path, entry: dict[str, str]) -> None:
    content = (folder / entry["file"]).read_bytes()
    assert hashlib.sha256(content).hexdigest() == entry["sha256"], entry["file"]
    assert entry["tarball"] == f"{entry['package']}-{entry['version']}.tgz"
    assert len(entry["tarball_sha256"]) == 64


def test_every_served_vendor_file_is_in_the_manifest() -> None:
    folder = MANIFESTS[0].parent
    listed = {entry["file"] for entry in json.loads(MANIFESTS[0].read_text())["files"]}
    present = {path.name for path in folder.iterdir() if path.name != "manifest.json"}
    assert present == listed


def test_htmx_is_a_2_0_release_not_the_rewrite() -> None:
    (htmx,) = [e for _, e in entries() if e["package"] == "htmx.org"]
    assert htmx["version"].startswith("2.0.")
