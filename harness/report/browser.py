"""Open an evidence report in headless Chromium and check that its summary is really on screen.

``python -m harness browser reports/evidence.html --screenshot reports/evidence.png``

Parsing the HTML proves what the file holds; this proves what a reader sees. It drives Debian's
``chromium`` headless through Playwright (``executable_path``: the system browser, so nothing
is downloaded; Playwright speaks the DevTools protocol to it over a pipe, waits for the page,
dismisses dialogs a page opens with ``alert()``), opens the file, sizes the viewport to the top
of the page through the summary table, and checks, for every claim row of the static summary
table (:func:`harness.report.html.summary_table`):

- the row has a non-empty box inside the viewport and is not hidden by CSS;
- the element the browser would hit at the centre of its verdict cell is that cell (nothing
  covers it);
- the screenshot has ink there: pixels of the verdict cell's box differ from its background
  (text was painted), and a ``supported`` verdict is drawn in the report's green.

It also reads the results table that pytest-html's JavaScript draws (rows and verdict column),
so a report whose script broke shows up as missing rows, and the tables' right edges and the
page's width: at 1,280 px both tables must fit the window, at 800 px the summary
(:data:`WIDTHS`; ``BrowserView.tables_fit`` / ``summary_fits``). The check returns a
:class:`BrowserView`; the command prints the rows as the browser rendered them and exits 0 when
all are visible, 1 when one is not, 2 on bad input (no such file, no Chromium, no Playwright).
A browser that dies, never answers or a page that never finishes loading is a
``RuntimeError`` naming what it was waiting for.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import re
import shutil
from collections.abc import Callable
from typing import Any

from harness.core.errors import UserError
from harness.core.results import atomic_write

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
WIDTHS = (1280, 800)  # a laptop window, and half of it: the summary must fit both, the results table the first
MAX_HEIGHT = 6000

# Measured in the page after load: every summary row's box, its verdict cell's box and what the
# browser hits at the cell's centre; pytest-html's own results rows (drawn by its script).
_MEASURE = r"""
(() => {
  const box = el => { const r = el.getBoundingClientRect();
                      return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const shown = el => { const s = getComputedStyle(el);
                        return s.display !== 'none' && s.visibility === 'visible' && parseFloat(s.opacity) > 0; };
  const table = document.querySelector('table.claims-summary-table');
  const heads = table ? [...table.tHead.rows[0].cells].map(c => c.textContent.trim()) : [];
  const col = heads.indexOf('Verdict');
  const rows = table ? [...table.tBodies[0].rows].map(tr => {
    const cell = tr.cells[col], b = box(cell);
    const hit = document.elementFromPoint(b.x + b.w / 2, b.y + b.h / 2);
    const bg = getComputedStyle(cell).backgroundColor;
    return {cells: [...tr.cells].map(c => c.textContent.trim()), row: box(tr), verdict_box: b,
            shown: shown(tr) && shown(cell), hit: !!hit && cell.contains(hit), background: bg};
  }) : [];
  const rheads = [...document.querySelectorAll('#results-table thead th')].map(c => c.textContent.trim());
  const results = [...document.querySelectorAll('#results-table tbody.results-table-row')].map(tb => {
    const tr = tb.querySelector('tr');
    return {cells: tr ? [...tr.cells].map(c => c.textContent.trim()) : []};
  });
  const right = el => el ? el.getBoundingClientRect().right : 0;
  const env = document.getElementById('environment');
  return {heads, rows, result_heads: rheads, results,
          bottom: table ? table.getBoundingClientRect().bottom + window.scrollY : 0,
          summary_right: right(table), results_right: right(document.getElementById('results-table')),
          page_width: document.documentElement.scrollWidth,
          environment_below: !!(env && table) && env.getBoundingClientRect().top > table.getBoundingClientRect().bottom};
})()
"""


@dataclasses.dataclass(frozen=True)
class RenderedRow:
    """One claim row of the summary table as the browser drew it."""

    cells: dict[str, str]
    box: tuple[float, float, float, float]  # x, y, width, height in CSS pixels
    in_viewport: bool
    shown: bool  # not display:none / visibility:hidden / opacity 0
    on_top: bool  # the verdict cell is what a click at its centre would hit
    ink_pixels: int  # verdict-cell pixels that differ from its background in the screenshot
    green_pixels: int  # ... of which close to the supported verdict's green

    @property
    def visible(self) -> bool:
        ok = self.in_viewport and self.shown and self.on_top and self.ink_pixels > 0
        return ok and (self.cells.get("Verdict") != "supported" or self.green_pixels > 0)


@dataclasses.dataclass(frozen=True)
class BrowserView:
    """What headless Chromium showed of a report."""

    path: str
    browser: str
    viewport: tuple[int, int]
    rows: list[RenderedRow]
    results_rows: list[dict[str, str]]  # pytest-html's script-drawn results table
    screenshot: bytes
    summary_right: float = 0.0  # right edge of the summary table (CSS px)
    results_right: float = 0.0  # ... of pytest-html's results table (0: none on the page)
    page_width: float = 0.0  # the page's scroll width: wider than the viewport = a horizontal scrollbar
    environment_below: bool = False  # pytest-html's Environment block is below the summary table

    @property
    def all_visible(self) -> bool:
        return bool(self.rows) and all(r.visible for r in self.rows)

    @property
    def summary_fits(self) -> bool:
        """The summary table ends inside the window (no column cut off or scrolled to)."""
        return 0 < self.summary_right <= self.viewport[0]

    @property
    def tables_fit(self) -> bool:
        """Both tables end inside the window and the page needs no horizontal scrolling."""
        return self.summary_fits and self.results_right <= self.viewport[0] and self.page_width <= self.viewport[0]

    def save_screenshot(self, path: str) -> None:
        """Write the PNG atomically (an interrupted write leaves no half file)."""

        atomic_write(path, lambda fh: fh.write(self.screenshot))


def find_chromium() -> str:
    """The Chromium binary: ``$CAUSAL_HEADS_CHROMIUM`` or the first of :data:`CANDIDATES` on PATH."""
    named = os.environ.get("CAUSAL_HEADS_CHROMIUM")
    found = shutil.which(named) if named else next(filter(None, map(shutil.which, CANDIDATES)), None)
    if found:
        return found
    raise UserError(
        "no Chromium found (looked for $CAUSAL_HEADS_CHROMIUM and "
        + ", ".join(CANDIDATES)
        + "); install Debian's package: apt-get install -y chromium"
    )


def _parse_rgb(css: str) -> tuple[int, int, int] | None:
    """``rgb(1, 2, 3)`` / ``rgba(1, 2, 3, 0.5)`` -> (1, 2, 3); transparent -> None."""
    if not css.startswith("rgb"):
        return None
    parts = [p.strip() for p in css[css.index("(") + 1 : css.rindex(")")].split(",")]
    if len(parts) == 4 and float(parts[3]) == 0:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def _ink(image: Any, box: Any, background: Any, tol: int = 40) -> tuple[int, int]:
    """Pixels inside ``box`` (1 px in from its border) that differ from ``background`` by more
    than ``tol`` in some channel, and how many of them are green (``td.verdict-supported`` is
    #1a7f37 in :data:`harness.report.html.STYLE`; a chromatic test, so grey anti-aliasing never counts)."""
    import numpy as np

    x, y, w, h = (round(v) for v in box)
    crop = image[max(y + 1, 0) : max(y + h - 1, 0), max(x + 1, 0) : max(x + w - 1, 0), :3].astype(int)
    if crop.size == 0:
        return 0, 0
    bg = np.array(background if background is not None else _dominant(crop))
    ink = (np.abs(crop - bg) > tol).any(axis=2)
    r, g, b = crop[..., 0], crop[..., 1], crop[..., 2]
    green = (g > r + 40) & (g > b + 30)
    return int(ink.sum()), int((ink & green).sum())


def _dominant(crop: Any) -> tuple[int, int, int]:
    """The most common colour of an image crop (a cell's background when CSS says transparent)."""
    import numpy as np

    colours, counts = np.unique(crop.reshape(-1, 3), axis=0, return_counts=True)
    r, g, b = (int(v) for v in colours[counts.argmax()])
    return r, g, b


LAUNCH_ARGS = ("--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")


def check_report(path: str, timeout: float = 60.0, width: int = WIDTH) -> BrowserView:
    """Open ``path`` in headless Chromium, screenshot the top of the page through the summary
    table and measure every summary row (see the module docstring)."""
    from matplotlib.image import imread

    if not os.path.isfile(path):
        raise UserError(f"report {path!r} does not exist")
    binary = find_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("the browser check needs Playwright: pip install playwright") from None
    url = pathlib.Path(os.path.abspath(path)).as_uri()  # quoted: a folder named "a#b" is not a fragment
    ms = timeout * 1000
    args = [*LAUNCH_ARGS, *(["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]
    step = "starting Chromium"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=binary, args=args, timeout=ms)
            try:
                version = f"Chromium/{browser.version}"
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page.set_default_timeout(ms)
                page.on("dialog", lambda dialog: dialog.dismiss())  # alert() must not block the check
                step = f"loading {url}"
                page.goto(url, wait_until="load", timeout=ms)
                step = "measuring the page"
                measured = page.evaluate(_MEASURE)
                height = int(min(max(measured["bottom"] + 20, 200), MAX_HEIGHT))
                page.set_viewport_size({"width": width, "height": height})
                measured = page.evaluate(_MEASURE)  # boxes and hit tests in the final viewport
                step = "taking the screenshot"
                png = page.screenshot(type="png", timeout=ms)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise RuntimeError(
            f"the browser failed while {step} ({timeout:g} s allowed): {_last_words(str(exc))}"
        ) from None
    return _view(path, version, (width, height), measured, png, imread)


def _last_words(error: str, lines: int = 5) -> str:
    """Playwright's error in one line: its first line, the browser's exit code and the last lines
    the browser printed (from the "Browser logs" Playwright appends)."""
    text = error.strip()
    first = text.splitlines()[0] if text else "no message"
    logs = text.split("Browser logs:", 1)[1].split("Call log:", 1)[0] if "Browser logs:" in text else ""
    said = re.findall(r"^\[pid=\d+\]\[(?:out|err)\] (.*)$", logs, flags=re.M)[-lines:]
    code = re.search(r"exitCode=(-?\d+)", text)
    return (
        first
        + (f"; Chromium exited with code {code.group(1)}" if code else "")
        + (": " + " | ".join(said) if said else "")
    )


def _view(
    path: str, version: str, viewport: tuple[int, int], page: dict, png: bytes, imread: Callable[..., Any]
) -> BrowserView:
    """The measured rows checked against the screenshot's pixels."""
    image = (imread(io.BytesIO(png), format="png")[:, :, :3] * 255).round().astype(int)
    rows = []
    for r in page["rows"]:
        b = r["verdict_box"]
        box = (b["x"], b["y"], b["w"], b["h"])
        ink, green = _ink(image, box, _parse_rgb(r["background"]))
        row = r["row"]
        inside = (
            row["w"] > 0
            and row["h"] > 0
            and row["y"] >= 0
            and row["y"] + row["h"] <= image.shape[0]
            and row["x"] >= 0
            and row["x"] + row["w"] <= image.shape[1]
        )
        rows.append(
            RenderedRow(
                cells=dict(zip(page["heads"], r["cells"])),
                box=(row["x"], row["y"], row["w"], row["h"]),
                in_viewport=inside,
                shown=r["shown"],
                on_top=r["hit"],
                ink_pixels=ink,
                green_pixels=green,
            )
        )
    results = [dict(zip(page["result_heads"], r["cells"])) for r in page["results"]]
    return BrowserView(
        path=path,
        browser=version,
        viewport=viewport,
        rows=rows,
        results_rows=results,
        screenshot=png,
        summary_right=float(page.get("summary_right", 0.0)),
        results_right=float(page.get("results_right", 0.0)),
        page_width=float(page.get("page_width", 0.0)),
        environment_below=bool(page.get("environment_below", False)),
    )
