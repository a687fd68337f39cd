"""The vendored front-end files under static/vendor/ are exactly the ones recorded in
static/vendor/VENDORED.md. An accidental edit, an unrecorded file, or an htmx upgrade off the 2.0.x
line fails here. Offline, no database."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

VENDOR_DIR = Path(__file__).resolve().parent.parent / "static" / "vendor"
VENDORED_MD = VENDOR_DIR / "VENDORED.md"

REQUIRED_COLUMNS = ("File", "Package", "Version", "Path in package", "Tarball", "Integrity", "SHA-256")
EXPECTED_FILES = {
    "htmx/htmx.min.js",
    "htmx/htmx.js",
    "htmx/LICENSE",
    "htmx-ext-ws/ws.js",
    "htmx-ext-ws/LICENSE",
}


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")]


def parse_vendored_table(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in VENDORED.md whose header has every required column."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        header = _cells(line)
        if not all(column in header for column in REQUIRED_COLUMNS):
            continue
        rows = []
        for row_line in lines[index + 2 :]:  # skip the `| --- |` separator line
            if not row_line.lstrip().startswith("|"):
                break
            cells = _cells(row_line)
            assert len(cells) == len(header), f"malformed table row in VENDORED.md: {row_line!r}"
            rows.append(dict(zip(header, cells)))
        return rows
    raise AssertionError(f"no table with columns {REQUIRED_COLUMNS} in {VENDORED_MD}")


ROWS = parse_vendored_table(VENDORED_MD.read_text(encoding="utf-8"))
ROWS_BY_FILE = {row["File"]: row for row in ROWS}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _htmx_version() -> str:
    versions = {row["Version"] for row in ROWS if row["Package"] == "htmx.org"}
    assert len(versions) == 1, f"htmx.org rows disagree on the version: {versions}"
    return versions.pop()


def test_table_lists_each_file_once():
    assert len(ROWS_BY_FILE) == len(ROWS), "a file is listed twice in VENDORED.md"
    assert set(ROWS_BY_FILE) == EXPECTED_FILES


def test_every_vendored_file_is_recorded():
    on_disk = {
        path.relative_to(VENDOR_DIR).as_posix()
        for path in VENDOR_DIR.rglob("*")
        if path.is_file() and path != VENDORED_MD
    }
    assert on_disk == set(ROWS_BY_FILE), "files under static/vendor/ differ from the VENDORED.md table"


@pytest.mark.parametrize("row", ROWS, ids=[row["File"] for row in ROWS])
def test_sha256_matches_record(row):
    path = VENDOR_DIR / row["File"]
    assert path.is_file(), f"{path} is missing"
    assert re.fullmatch(r"[0-9a-f]{64}", row["SHA-256"]), f"bad SHA-256 cell for {row['File']}"
    assert _sha256(path) == row["SHA-256"], (
        f"{row['File']} changed since it was vendored; re-vendor it (see VENDORED.md) instead of editing it"
    )


@pytest.mark.parametrize("row", ROWS, ids=[row["File"] for row in ROWS])
def test_provenance_cells_are_consistent(row):
    package, version = row["Package"], row["Version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"not an exact version: {version!r}"
    basename = package.rsplit("/", 1)[-1]
    assert row["Tarball"] == f"https://registry.npmjs.org/{package}/-/{basename}-{version}.tgz"
    assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", row["Integrity"]), f"bad integrity for {row['File']}"
    assert row["Path in package"].startswith("package/")
    assert row["Path in package"].rsplit("/", 1)[-1] == row["File"].rsplit("/", 1)[-1]


def test_htmx_pinned_to_2_0_x():
    assert re.fullmatch(r"2\.0\.\d+", _htmx_version())


def test_htmx_min_js_version_string():
    text = (VENDOR_DIR / "htmx" / "htmx.min.js").read_text(encoding="utf-8")
    found = re.findall(r"""\bversion\s*:\s*["']([^"']+)["']""", text)
    assert found == [_htmx_version()], f"htmx.min.js declares version(s) {found}"
    assert found[0].startswith("2.0.")


def test_htmx_js_version_string():
    text = (VENDOR_DIR / "htmx" / "htmx.js").read_text(encoding="utf-8")
    found = re.findall(r"""\bversion\s*:\s*["']([^"']+)["']""", text)
    assert found == [_htmx_version()], f"htmx.js declares version(s) {found}"


def test_ws_extension_is_the_htmx_2_browser_build():
    text = (VENDOR_DIR / "htmx-ext-ws" / "ws.js").read_text(encoding="utf-8")
    assert "htmx.defineExtension('ws'" in text
    # The browser build is a plain script that uses the global `htmx`. The ES-module build
    # (dist/ws.esm.js) is the same file with an `import htmx from 'htmx.org'` line added.
    assert not re.search(r"^\s*(import|export)\s", text, re.MULTILINE)
