"""The HTML report as a browser shows it: rendered from realistic data (a penguins baseline from
functions/core/baseline.py, a drift report from functions/core/drift.py on a shifted copy, quality
checks in the quality check's format) and loaded in headless Chromium with the network off.

Chromium is installed by `make chromium` (a prerequisite of `make test`); without it the test fails
rather than skips, so a CI machine that lost it is noticed.
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime

import pytest

from functions.core.report import render_report
from tests import reportdata

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-extensions", "--disable-background-networking", "--disable-sync",
                  "--disable-component-update", "--no-default-browser-check",
                  # Network off: every host resolves nowhere and no proxy is tried.
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                  "--proxy-bypass-list=<-loopback>"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed (make chromium installs it: apt-get install -y chromium)")


def run_chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def png_size_and_colours(path) -> tuple[int, int, int]:
    """(width, height, variety): with Pillow the distinct colours; without it (the venv has none) the
    distinct scanlines among 50 sampled from the decompressed image data. A page of one colour gives 1."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    try:
        from PIL import Image

        with Image.open(path) as img:
            colours = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
            return width, height, len(colours)
    except ImportError:
        pass
    depth, ctype = data[24], data[25]
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    channels = {2: 3, 6: 4}.get(ctype, 1) if depth == 8 else 1
    stride = 1 + width * channels
    # Filter bytes make raw rows inexact, but a page of one colour compresses to near-identical rows.
    rows = {raw[i * stride + 1:(i + 1) * stride] for i in range(0, height, max(1, height // 50))}
    return width, height, len(rows)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    evil = "<script>document.title='pwned'</script>"
    drift, baseline = reportdata.drift_and_baseline(extra_feature=evil)
    html = render_report("penguins", versions=reportdata.versions(), production=3, drift=drift, baseline=baseline,
                         quality=reportdata.quality_checks(), generated_at=datetime(2026, 5, 6, 12, tzinfo=UTC))
    path = tmp_path_factory.mktemp("report") / "penguins.html"
    path.write_text(html, encoding="utf-8")
    return {"path": path, "html": html, "drift": drift, "evil": evil}


def test_chromium_shows_every_section_offline(page, tmp_path):
    dom = run_chromium("--dump-dom", page["path"].as_uri(), tmp_path=tmp_path).stdout
    assert "<title>Shipyard report: penguins" in dom  # the injected script did not run (title unchanged)
    for heading in ("Shipyard report: penguins", "Versions", "Latest drift check", "Quality over time",
                    "Latest quality check", "Confusion matrix"):
        assert re.search(rf"<h[123][^>]*>{re.escape(heading)}", dom), heading
    assert '<b id="production">v3</b>' in dom
    assert "<td>body_mass_g</td>" in dom and "<figcaption>flipper_length_mm</figcaption>" in dom
    score = page["drift"]["features"]["body_mass_g"]["value"]
    assert f"<td class=\"num\">{score:.4g}</td>" in dom
    for label in reportdata.CLASSES:
        assert f"<th>{label}</th>" in dom, label
    # Charts: inline SVG, one per feature (7 with the hostile one), quality over time.
    assert dom.count("<svg") == 8
    assert "<script" not in dom.lower()
    assert "&lt;script&gt;document.title" in dom  # the hostile feature name is text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", dom, re.I)
    assert "http://" not in page["html"] and "https://" not in page["html"]


def test_chromium_screenshot_is_a_real_picture(page, tmp_path):
    shot = tmp_path / "report.png"
    run_chromium(f"--screenshot={shot}", "--window-size=1280,2000", page["path"].as_uri(), tmp_path=tmp_path)
    assert shot.stat().st_size > 50_000, shot.stat().st_size
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1280, 2000)
    assert colours > 10, colours  # text, tables and bars, not one flat colour (a blank page gives 1)
