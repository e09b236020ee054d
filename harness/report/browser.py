"""Open an evidence report in headless Chromium and check that its summary is really on screen.

``python -m harness.browser reports/evidence.html --screenshot reports/evidence.png``

Parsing the HTML proves what the file holds; this proves what a reader sees. It starts Debian's
``chromium`` headless, drives it over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ended by NUL on file descriptors 3 and 4, so no extra package and no network port),
opens the file, sizes the viewport to the top of the page through the summary table, and checks,
for every claim row of the static summary table (:func:`harness.report.html.summary_table`):

- the row has a non-empty box inside the viewport and is not hidden by CSS;
- the element the browser would hit at the centre of its verdict cell is that cell (nothing
  covers it);
- the screenshot has ink there: pixels of the verdict cell's box differ from its background
  (text was painted), and a ``supported`` verdict is drawn in the report's green.

It also reads the results table that pytest-html's JavaScript draws (rows and verdict column),
so a report whose script broke shows up as missing rows. The check returns a
:class:`BrowserView`; the command prints the rows as the browser rendered them and exits 0 when
all are visible, 1 when one is not, 2 on bad input (no such file, no Chromium).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import pathlib
import select
import shutil
import subprocess
import sys
import tempfile
import time

from harness.errors import UserError
from harness.results import atomic_write

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH = 1280
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
  return {heads, rows, result_heads: rheads, results,
          bottom: table ? table.getBoundingClientRect().bottom + window.scrollY : 0};
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

    @property
    def all_visible(self) -> bool:
        return bool(self.rows) and all(r.visible for r in self.rows)

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


_MOVE_FDS = """import fcntl, os, sys
r, w = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])
for fd in sys.argv[1:3]:
    os.close(int(fd))
os.dup2(r, 3)
os.dup2(w, 4)
os.close(r)
os.close(w)
os.execv(sys.argv[3], sys.argv[3:])
"""


class _DevTools:
    """The DevTools protocol over Chromium's pipe: send a command, wait for its answer."""

    def __init__(self, binary: str, profile_dir: str, timeout: float):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.timeout = timeout

        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile_dir}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            "--force-device-scale-factor=1",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        # The browser reads commands on fd 3 and writes answers on fd 4: a minimal Python exec
        # wrapper moves the pipe ends there (no preexec_fn, which is unsafe in a threaded process).
        self._log = open(os.path.join(profile_dir, "chromium.log"), "w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-E", "-c", _MOVE_FDS, str(to_chrome_r), str(from_chrome_w), *args, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"Chromium exited (code {self.proc.poll()}) before {method}" + self.log_tail()) from None
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read(deadline, method)
            if m.get("id") == self._next:
                if "error" in m:
                    raise RuntimeError(f"Chromium refused {method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and m.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read(deadline, method))

    def _read(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise RuntimeError(f"Chromium did not answer {waiting_for} within {self.timeout:.0f} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(
                    f"Chromium exited (code {self.proc.poll()}) while waiting for {waiting_for}" + self.log_tail()
                )
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines Chromium wrote to stdout/stderr, for an error message."""
        self._log.flush()
        self._log.seek(0)
        tail = self._log.read().decode(errors="replace").strip().splitlines()[-lines:]
        return (": " + " | ".join(tail)) if tail else ""

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=min(10.0, self.timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


def _parse_rgb(css: str) -> tuple[int, int, int] | None:
    """``rgb(1, 2, 3)`` / ``rgba(1, 2, 3, 0.5)`` -> (1, 2, 3); transparent -> None."""
    if not css.startswith("rgb"):
        return None
    parts = [p.strip() for p in css[css.index("(") + 1 : css.rindex(")")].split(",")]
    if len(parts) == 4 and float(parts[3]) == 0:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def _ink(image, box, background, tol: int = 40) -> tuple[int, int]:
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


def _dominant(crop) -> tuple[int, int, int]:
    """The most common colour of an image crop (a cell's background when CSS says transparent)."""
    import numpy as np

    colours, counts = np.unique(crop.reshape(-1, 3), axis=0, return_counts=True)
    return tuple(int(v) for v in colours[counts.argmax()])


def check_report(path: str, timeout: float = 60.0, width: int = WIDTH) -> BrowserView:
    """Open ``path`` in headless Chromium, screenshot the top of the page through the summary
    table and measure every summary row (see the module docstring)."""
    from matplotlib.image import imread

    if not os.path.isfile(path):
        raise UserError(f"report {path!r} does not exist")
    binary = find_chromium()
    url = pathlib.Path(os.path.abspath(path)).as_uri()  # quoted: a folder named "a#b" is not a fragment
    with tempfile.TemporaryDirectory(prefix="causal-heads-chromium-") as profile:
        tools = _DevTools(binary, profile, timeout)
        try:
            version = tools.send("Browser.getVersion").get("product", binary)
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            tools.send("Page.enable", session=session)

            def window(height: int) -> None:  # one screenshot pixel per CSS pixel
                tools.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                    session,
                )

            window(900)
            tools.send("Page.navigate", {"url": url}, session)
            tools.wait_event("Page.loadEventFired", session)
            page = _evaluate(tools, session)
            height = int(min(max(page["bottom"] + 20, 200), MAX_HEIGHT))
            window(height)
            page = _evaluate(tools, session)  # boxes and hit tests in the final viewport
            png = base64.b64decode(tools.send("Page.captureScreenshot", {"format": "png"}, session)["data"])
        finally:
            tools.close()
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
        path=path, browser=version, viewport=(width, height), rows=rows, results_rows=results, screenshot=png
    )


def _evaluate(tools: _DevTools, session: str) -> dict:
    res = tools.send("Runtime.evaluate", {"expression": _MEASURE, "returnByValue": True}, session)
    if "exceptionDetails" in res:
        d = res["exceptionDetails"]
        raise RuntimeError(f"measuring the page failed: {d.get('exception', {}).get('description') or d.get('text')}")
    return res["result"]["value"]
