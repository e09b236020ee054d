"""The pytest-html evidence report: summary columns, per-claim evidence, escaping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = '<script>alert("x")</script> Describe your day & night.'
CLAIMS = """
[[claim]]
id = "identity"
model = "tiny-gpt2"
heads = "1:10"
patch_mode = "z"
source = "neutral"
metric = "sentiment"
direction = "equivalent"
margin = 0.01
n_prompts = 4
max_tokens = 5
tier = "fast"

[[claim]]
id = "no_effect"
model = "tiny-gpt2"
heads = "1:10"
patch_mode = "z"
source = "gratitude"
metric = "politeness"
direction = "increase"
n_prompts = 4
max_tokens = 5
tier = "fast"
"""


class _Blob(HTMLParser):
    """pytest-html 4 keeps the results in a JSON attribute that its JavaScript renders."""

    blob = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-jsonblob" in attrs:
            self.blob = json.loads(attrs["data-jsonblob"])


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "td":
            self.cells.append("")

    def handle_data(self, data):
        if self.cells:
            self.cells[-1] += data


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.texts = []

    def handle_data(self, data):
        self.texts.append(data)

    @classmethod
    def of(cls, fragment) -> list[str]:
        p = cls()
        p.feed(fragment if isinstance(fragment, str) else "".join(fragment))
        return p.texts


class _SummaryTable(HTMLParser):
    """Header and rows of the static ``claims-summary-table``."""

    def __init__(self):
        super().__init__()
        self.inside, self.head, self.rows, self.cell = False, [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "claims-summary-table") in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if self.inside and tag in ("td", "th"):
            self.rows[-1].append(self.cell)
            self.cell = None
        elif tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    @classmethod
    def of(cls, page: str) -> _SummaryTable:
        p = cls()
        p.feed(page)
        p.head, p.rows = (p.rows[0], p.rows[1:]) if p.rows else ([], [])
        return p


def _parse(fragment: str) -> _Cells:
    p = _Cells()
    p.feed(fragment)
    return p


@pytest.fixture(scope="module")
def evidence_run(tmp_path_factory):
    """One real claims run on the tiny GPT-2 (a hostile first prompt) with the HTML report; the
    report file existed before, so the run must replace it."""
    tmp_path = tmp_path_factory.mktemp("evidence")
    prompts = tmp_path / "prompts"
    shutil.copytree(os.path.join(ROOT, "prompts"), prompts)
    neutral = json.loads((prompts / "neutral_prompts.json").read_text())
    neutral["prompts"][0] = HOSTILE
    (prompts / "neutral_prompts.json").write_text(json.dumps(neutral))
    (tmp_path / "claims.toml").write_text(CLAIMS)
    report = tmp_path / "evidence.html"
    report.write_text("<!DOCTYPE html><p>the last run's report</p>")  # another kind of file is refused
    old_inode = report.stat().st_ino
    env = {**os.environ, "CAUSAL_HEADS_PROMPTS": str(prompts)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--claims", str(tmp_path / "claims.toml"), "--findings", str(tmp_path / "f.json"),
                           "--html", str(report), "--self-contained-html", "-q", "-p", "no:cacheprovider"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout + proc.stderr
    return tmp_path, report, old_inode


def test_html_report_summary_evidence_and_escaping(evidence_run):
    tmp_path, report, old_inode = evidence_run
    # replaced by rename (a new inode), not rewritten in place; no temporary file left behind
    assert report.stat().st_ino != old_inode
    assert sorted(p.name for p in tmp_path.glob(".evidence.html*")) == []
    parser = _Blob()
    parser.feed(report.read_text())
    tests = {k.split("::")[1]: v[0] for k, v in parser.blob["tests"].items()}
    # provenance in pytest-html's Environment table: the packages the findings record, the commit
    findings_doc = json.loads((tmp_path / "f.json").read_text())
    env = parser.blob["environment"]
    assert env["Packages"] == {k: v for k, v in findings_doc["packages"].items() if v}
    assert env["Packages"]["transformer-lens"] == "4.3.0"
    assert env["Commit"].split()[0] == findings_doc["git"]["commit"]
    findings = {c["claim"]["id"]: c for c in json.loads((tmp_path / "f.json").read_text())["claims"]}
    for test_id, cid in (("identity-head_1_10", "identity"), ("no_effect-head_1_10", "no_effect")):
        cells = _parse("".join(tests[test_id]["resultsTableRow"])).cells
        f = findings[cid]
        assert cells[2] == f["verdict"]
        assert cells[3] == format(f["effect"]["mean"], "+.4f")
        q = f.get("equivalence") or f["effect"]  # an equivalence claim shows TOST's interval, marked
        assert cells[4].startswith(f"[{q['ci_low']:+.4f}, {q['ci_high']:+.4f}]")
        assert ("90% TOST, margin" in cells[4]) == (f["claim"]["direction"] == "equivalent")
        assert cells[7] == str(f["effect"]["n"])
        assert cells[10] == (", ".join(w["code"] for w in f["warnings"]) or "—")
        assert cells[11] == f"{f['text_changed']['patched_vs_baseline']}/{f['text_changed']['n']}"
    # 4 prompts: even 4 of 4 up gives p = 1/16 > 0.05, so the directional claim is untestable
    assert "untestable" in [w["code"] for w in findings["no_effect"]["warnings"]]
    assert "untestable" in _parse("".join(tests["no_effect-head_1_10"]["resultsTableRow"])).cells[10]
    assert any(c.startswith("warning (untestable): only") for c in
               [t for t in _Text.of(tests["no_effect-head_1_10"]["log"])])
    assert _parse("".join(tests["identity-head_1_10"]["resultsTableRow"])).cells[2] == "supported"
    evidence = _parse(tests["identity-head_1_10"]["log"])
    assert "script" not in evidence.tags  # the hostile prompt is text, not markup
    assert HOSTILE in evidence.cells  # ... and shown verbatim
    page = _Text.of(report.read_text())
    assert "2 claims evaluated: 1 supported, 1 not supported; p-values holm-adjusted across them." in page
    assert cells_of(tests["identity-head_1_10"]["resultsTableRow"])[11] == "0/4"  # identity: no text changed
    # the static summary table at the top: one row per claim, the same values as the results table
    summary = _SummaryTable.of(report.read_text())
    assert summary.head == ["Claim", "Heads", "Metric", "Direction", "Compared", "Verdict", "Effect", "CI (95%; TOST where marked)", "p raw / adj", "dz", "n",
                            "Random-head pct", "Up / down", "Warnings", "Text changed"]
    assert [r[0] for r in summary.rows] == ["identity", "no_effect"]
    for row in summary.rows:
        f = findings[row[0]]
        assert row[1] == "1:10"
        # what the claim asserts: metric, direction (a margin for an equivalence), what is compared
        assert row[2] == f["claim"]["metric"] and row[3].startswith(f["claim"]["direction"])
        assert row[4] == f"{f['claim']['patch_mode']} {f['claim']['source']} → {f['claim']['target']} vs baseline"
        row = row[:2] + row[5:]
        assert row[2:] == cells_of(tests[f"{row[0]}-head_1_10"]["resultsTableRow"])[2:12]
        assert row[5] == f"{f['p_raw']:.4g} / {f['p_adjusted']:.4g}"
        dz = f["effect"]["cohens_dz"]
        assert row[6] == ("—" if dz is None else format(dz, ".3f"))  # NaN is stored as null
    # only the verdict cell of each row carries a verdict class (it colours the verdict)
    table = report.read_text().split('<table class="claims-summary-table">', 1)[1].split("</table>", 1)[0]
    assert table.count('class="verdict-') == 2
    assert '<td class="verdict-supported">supported</td>' in table
    # every prompt's generations are in the evidence, not only the picked examples
    texts = _Text.of(tests["no_effect-head_1_10"]["log"])
    assert "all 4 prompts' generations" in texts
    for g in findings["no_effect"]["generations"]:
        assert g["patched"][0] in texts or not g["patched"][0].strip()


def test_report_writes_wait_for_the_runs_commit_and_an_interrupted_one_leaves_nothing(tmp_path):
    """pytest-html writes the report to the staged path the plugin gave it (its public --html
    option): the old report stays until the run commits; a run that discards leaves no temporary;
    a staged report that nobody wrote keeps the old one."""
    from harness.core import outputs

    report = tmp_path / "evidence.html"
    report.write_text("the last complete report")
    pending = outputs.PendingFiles()
    staged = pending.stage(str(report))
    assert os.path.dirname(staged) == str(tmp_path) and staged != str(report)
    with open(staged, "w", encoding="utf-8") as fh:  # as pytest-html's _write_report does
        fh.write("<html>the whole new report</html>")
    assert report.read_text() == "the last complete report"  # pending until the run commits
    assert pending.commit() == [str(report)]
    assert report.read_text() == "<html>the whole new report</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.html"]

    interrupted = outputs.PendingFiles()
    with open(interrupted.stage(str(report)), "w") as fh:
        fh.write("<html>half of a ")
    interrupted.discard()  # a run cut short: nothing of it is put in place
    assert report.read_text() == "<html>the whole new report</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.html"]

    unwritten = outputs.PendingFiles()
    unwritten.stage(str(report))  # pytest-html never wrote (it broke before session end)
    assert unwritten.commit() == []
    assert report.read_text() == "<html>the whole new report</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evidence.html"]


def test_the_html_report_is_staged_titled_by_its_name_and_put_in_place_with_the_findings(pytester):
    """A claims run with --html: pytest-html is given a staged path and the page keeps its real
    title; the report and the findings go in place together at the end."""
    pytester.makefile(".toml", claims=(
        '[[claim]]\nid = "identity"\nmodel = "tiny-gpt2"\nheads = "1:3"\npatch_mode = "z"\nsource = "neutral"\n'
        'metric = "sentiment"\ndirection = "equivalent"\nmargin = 0.05\nn_prompts = 4\nmax_tokens = 3\n'
        'tier = "fast"\n'
    ))
    res = pytester.runpytest_subprocess("--claims", "claims.toml", "--findings", "f.json", "--html", "out/r.html",
                                        "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    out = pytester.path / "out"
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == ["r.html"]  # no staged copy left
    page = (out / "r.html").read_text()
    assert '<title id="head-title">r.html</title>' in page and "identity" in page and ".tmp" not in page
    assert (pytester.path / "f.json").exists()
    res.stdout.fnmatch_lines(["*Generated html report: file://*/out/r.html*"])
    assert ".tmp" not in res.stdout.str()


def cells_of(fragment) -> list[str]:
    return _parse("".join(fragment)).cells


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium; ``make test`` installs it and sets CAUSAL_HEADS_BROWSER=required, so
    there a missing browser fails instead of skipping."""
    from harness.core.errors import UserError
    from harness.report.browser import find_chromium

    try:
        return find_chromium()
    except UserError as exc:
        if os.environ.get("CAUSAL_HEADS_BROWSER") == "required":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def test_report_summary_is_visible_in_headless_chromium(evidence_run, chromium, tmp_path, capsys):
    from harness.cli import browser as browser_cli
    from harness.report import browser

    _, report, _ = evidence_run
    findings = {c["claim"]["id"]: c for c in json.loads((report.parent / "f.json").read_text())["claims"]}
    view = browser.check_report(str(report))
    assert view.all_visible
    assert [r.cells["Claim"] for r in view.rows] == ["identity", "no_effect"]
    for r in view.rows:
        f = findings[r.cells["Claim"]]
        assert r.visible, r
        assert r.cells["Verdict"] == f["verdict"]
        assert r.cells["Effect"] == format(f["effect"]["mean"], "+.4f")
        from harness.report.text import decisive_text

        q = f.get("equivalence") or f["effect"]  # an equivalence claim shows the interval that decides it
        assert r.cells["CI (95%; TOST where marked)"] == decisive_text(f)[1]
        assert decisive_text(f)[1].startswith(f"[{q['ci_low']:+.4f}, {q['ci_high']:+.4f}]")
        assert 0 <= r.box[1] and r.box[1] + r.box[3] <= view.viewport[1]
    assert view.rows[0].green_pixels > 0  # "supported" is painted in the report's green
    assert view.rows[1].green_pixels == 0
    # pytest-html's script drew its results table too: a row per claim, with our verdict column
    assert sorted(r["Verdict"] for r in view.results_rows) == ["not supported", "supported"]
    assert view.screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    # one screenshot pixel per CSS pixel: the boxes measured in the page index the image directly
    assert (int.from_bytes(view.screenshot[16:20], "big"), int.from_bytes(view.screenshot[20:24], "big")) \
        == view.viewport
    shot = tmp_path / "shot.png"
    assert browser_cli.main([str(report), "--screenshot", str(shot)]) == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "identity: supported, effect +0.0000" in out and "results table drawn by pytest-html's script: 2 rows" in out


def _summary_page(evidence_run, tmp_path, extra_css: str):
    """The run's summary table alone on a page with the report's style plus ``extra_css``, as
    headless Chromium sees it."""
    from harness.report import browser
    from harness.report import html as html_report

    _, report, _ = evidence_run
    results = json.loads((report.parent / "f.json").read_text())["claims"]
    page = tmp_path / "page.html"
    page.write_text(f"<html><head>{html_report.STYLE}<style>{extra_css}</style></head><body>"
                    f"<h2>Summary</h2>{html_report.summary_table(results)}</body></html>")
    return browser.check_report(str(page))


@pytest.mark.parametrize("extra, broken", [
    ("", None),
    (".claims-summary-table { visibility: hidden; }", "shown"),
    ("body::after { content: ''; position: fixed; inset: 0; background: #fff; }", "on_top"),
    (".claims-summary-table td { color: #fff !important; }", "ink_pixels"),
    ("td.verdict-supported { color: #000; }", "green_pixels"),
    (".claims-summary-table { margin-top: 7000px; }", "in_viewport"),
])
def test_browser_check_fails_when_the_summary_is_not_seen(evidence_run, chromium, tmp_path, extra, broken):
    """The check can fail: hidden, covered, unpainted, uncoloured or off-screen summaries are caught
    (the first case, the same page untouched, is the control)."""
    view = _summary_page(evidence_run, tmp_path, extra)
    assert [r.cells["Claim"] for r in view.rows] == ["identity", "no_effect"]
    if broken is None:
        assert view.all_visible
        return
    assert not view.all_visible
    supported = view.rows[0]
    assert not supported.visible
    assert not getattr(supported, broken) if broken != "ink_pixels" else supported.ink_pixels == 0


def test_browser_check_without_a_summary_or_a_file(chromium, tmp_path, capsys):
    from harness.cli import browser as browser_cli
    from harness.core.errors import UserError
    from harness.report import browser

    page = tmp_path / "empty.html"
    page.write_text("<html><body><p>no claims here</p></body></html>")
    assert browser_cli.main([str(page)]) == 1
    assert "no summary table rows on the page" in capsys.readouterr().out
    with pytest.raises(UserError, match="does not exist"):
        browser.check_report(str(tmp_path / "missing.html"))


def test_long_claim_ids_and_head_lists_wrap_inside_the_window(evidence_run, chromium, tmp_path, monkeypatch):
    """The shipped zero control patches 15 whole layers ("0:*,2:*,...,28:*") and sweep claim ids run
    to 66 characters, none with a space: unbroken they pushed the last columns out of the window
    (seen on the default model's 14-claim report)."""
    from harness.report import browser
    from harness.report import html as html_report

    _, report, _ = evidence_run
    base = json.loads((report.parent / "f.json").read_text())["claims"]
    results = []
    for i in range(14):
        r = json.loads(json.dumps(base[i % 2]))
        r["claim"]["id"] = f"sweep_smollm2_135m_gratitude_top3_together_raise_gratitude_logprob_{i}"
        r["claim"]["heads"] = ",".join(f"{layer}:*" for layer in range(0, 30, 2))
        results.append(r)
    page, real = tmp_path / "page.html", report.read_text()
    start = real.index('<table class="claims-summary-table">')
    end = real.index("</table>", start) + len("</table>")

    def render(head=real[:start]):  # the real report (its fonts and styles) with 14 such rows in its summary
        page.write_text(head + html_report.summary_table(results) + real[end:])
        return browser.check_report(str(page))

    view = render()
    assert len(view.rows) == 14 and view.all_visible
    monkeypatch.setattr(html_report, "_breakable", html_report.escape)  # without the break points
    assert render().all_visible  # the cells' overflow-wrap still breaks them
    assert not any(r.in_viewport for r in render(real[:start].replace("overflow-wrap: anywhere;", "")).rows)


@pytest.mark.parametrize("extra", [
    ".claims-summary-table { position: relative; left: -3000px; }",  # off the left edge
    ".claims-summary-table { margin-left: 1100px; }",  # past the right edge
    "h2 { height: 9000px; }",  # below the largest window the check opens
    # straddling the bottom of the largest window: tops inside, bottoms outside
    "h2 { height: 5900px; margin: 0; } .claims-summary-table td { height: 300px; vertical-align: top; }",
])
def test_rows_outside_the_window_are_not_visible(evidence_run, chromium, tmp_path, extra):
    view = _summary_page(evidence_run, tmp_path, extra)
    assert len(view.rows) == 2 and not any(r.in_viewport or r.visible for r in view.rows)


def test_a_browser_that_dies_is_an_error_with_its_last_words(tmp_path, monkeypatch):
    from harness.report import browser

    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'starting'\necho 'fatal: no display for you' >&2\nexit 7\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CAUSAL_HEADS_CHROMIUM", str(fake))
    page = tmp_path / "page.html"
    page.write_text("<html><body></body></html>")
    with pytest.raises(RuntimeError, match=r"^the browser failed while starting Chromium \(20 s allowed\): .*; "
                                           r"Chromium exited with code 7: starting \| fatal: no display for you$"):
        browser.check_report(str(page), timeout=20)
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # alive, never answering
    with pytest.raises(RuntimeError, match=r"^the browser failed while starting Chromium \(1 s allowed\): "
                                           r"BrowserType.launch: Timeout 1000ms exceeded"):
        browser.check_report(str(page), timeout=1)
    monkeypatch.setenv("CAUSAL_HEADS_CHROMIUM", str(tmp_path / "nowhere"))
    with pytest.raises(browser.UserError, match="no Chromium found .*apt-get install -y chromium"):
        browser.check_report(str(page))


def test_dominant_colour_and_ink():
    import numpy as np

    from harness.report import browser

    cell = np.full((12, 40, 3), 255)
    cell[4:8, 5:15] = (0x1A, 0x7F, 0x37)  # green text
    cell[4:8, 20:30] = (75, 75, 75)  # grey anti-aliasing
    assert browser._dominant(cell) == (255, 255, 255)
    # the box is read 1 px inside its border; background from CSS or, if transparent, the dominant colour
    assert browser._ink(cell, (0, 0, 40, 12), None) == (80, 40)
    assert browser._ink(cell, (0, 0, 40, 12), (255, 255, 255)) == (80, 40)
    # against a green background: the 10 x 38 inner pixels but the 40 green ones, none of them green
    assert browser._ink(cell, (0, 0, 40, 12), (0x1A, 0x7F, 0x37)) == (10 * 38 - 40, 0)
    assert browser._parse_rgb("rgba(0, 0, 0, 0)") is None and browser._parse_rgb("rgb(1, 2, 3)") == (1, 2, 3)
    assert browser._parse_rgb("rgba(1, 2, 3, 0.5)") == (1, 2, 3) and browser._parse_rgb("transparent") is None


def test_a_page_that_alerts_in_a_folder_named_with_a_hash_is_checked_and_one_that_never_loads_times_out(
        chromium, tmp_path):
    """Reliability class 8: a page calling alert() blocked the hand-written DevTools driver, a
    folder named "a#b" was read as a URL fragment, and a page that never settled hung."""
    from harness.report import browser

    folder = tmp_path / "a#b"
    folder.mkdir()
    page = folder / "r.html"
    page.write_text("<html><body><script>alert('hello')</script><p>no summary here</p></body></html>")
    view = browser.check_report(str(page), timeout=30)
    assert view.browser.startswith("Chromium/") and view.rows == [] and not view.all_visible
    page.write_text("<html><body><script>while (true) {}</script></body></html>")
    with pytest.raises(RuntimeError, match=r"^the browser failed while loading file://.*/a%23b/r\.html \(3 s allowed\)"):
        browser.check_report(str(page), timeout=3)


def test_intervention_claims_are_named_by_their_intervention_and_verdicts_are_told_apart():
    """Issue 40: intervention claims showed an empty Heads cell; only "supported" was coloured."""
    from harness.report.html import STYLE, summary_table

    r = {"claim": {"id": "steer_up", "heads": "", "intervention": "steer", "metric": "sentiment",
                   "direction": "increase"},
         "verdict": "not supported", "effect": {"mean": 0.1, "ci_low": -0.1, "ci_high": 0.3, "n": 8}}  # fmt: skip
    table = summary_table([r])
    assert "<td>intervention steer</td>" in table and 'class="verdict-not-supported"' in table
    styles = {v: re.search(rf"td\.verdict-{v}[^{{]*\{{([^}}]*)\}}", STYLE) for v in ("supported", "not-supported")}
    assert styles["not-supported"] and styles["not-supported"].group(1) != styles["supported"].group(1)


def test_the_shipped_summary_fits_1280_and_800_px_below_it_the_environment(evidence_run, chromium, tmp_path):
    """The summary of the default model's claims (long ids, head lists, versus and equivalence
    claims, three more columns) fits an 800 px window, both tables fit 1,280 px, and pytest-html's
    Environment block comes after the summary. The control: without the break rules the same
    summary overflows 800 px."""
    from harness.report import browser
    from harness.report import html as html_report

    _, report, _ = evidence_run
    shipped = json.loads((Path(ROOT) / "fixtures" / "findings_v1_8d19a05.json").read_text())["claims"]
    page, real = tmp_path / "page.html", report.read_text()
    start = real.index('<table class="claims-summary-table">')
    end = real.index("</table>", start) + len("</table>")
    page.write_text(real[:start] + html_report.summary_table(shipped) + real[end:])
    wide = browser.check_report(str(page), width=1280)
    narrow = browser.check_report(str(page), width=800)
    assert len(wide.rows) == len(shipped) and wide.all_visible and narrow.all_visible
    assert wide.tables_fit and narrow.summary_fits, (wide.summary_right, wide.results_right, narrow.summary_right)
    assert wide.environment_below
    assert {"Metric", "Direction", "Compared"} <= set(wide.rows[0].cells)
    unbroken = real[:start].replace("overflow-wrap: anywhere;", "")
    page.write_text(unbroken + html_report.summary_table(shipped) + real[end:])
    assert not browser.check_report(str(page), width=800).summary_fits
