"""A run's outputs replaced together or not at all; SIGTERM and Ctrl-C leave no temporaries and
no orphaned child (the reliability issue's classes 3 and 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness.outputs import PendingFiles, Staging, write_temporary

from .test_claims import BASE, claims_toml


def test_write_temporary_leaves_nothing_when_interrupted(tmp_path):
    def interrupted(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_temporary(str(tmp_path / "a.json"), interrupted)
    assert list(tmp_path.iterdir()) == []


def test_pending_files_go_in_place_together_or_not_at_all(tmp_path):
    (tmp_path / "f.json").write_text("old findings")
    (tmp_path / "r.html").write_text("old report")
    pending = PendingFiles()
    pending.write_bytes(str(tmp_path / "f.json"), b"new findings")
    pending.write_bytes(str(tmp_path / "r.html"), b"new report")
    assert (tmp_path / "f.json").read_text() == "old findings"
    pending.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "r.html"]
    assert (tmp_path / "r.html").read_text() == "old report"
    pending.write_bytes(str(tmp_path / "f.json"), b"new findings")
    pending.write_bytes(str(tmp_path / "r.html"), b"new report")
    pending.commit()
    assert [(tmp_path / n).read_text() for n in ("f.json", "r.html")] == ["new findings", "new report"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "r.html"]


def test_staging_replaces_files_and_folders_whole_on_commit_and_nothing_otherwise(tmp_path):
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "stale.png").write_text("old plot")
    (out / "findings.json").write_text("old")
    (out / "keep.txt").write_text("not this run's")
    with Staging(str(out)) as stage:
        (tmp_path / "x").mkdir()
        os.makedirs(stage.path("plots"))
        open(stage.path("plots/new.png"), "w").write("new plot")
        open(stage.path("findings.json"), "w").write("new")
    assert sorted(p.name for p in out.iterdir()) == ["findings.json", "keep.txt", "plots"]  # left without commit
    assert (out / "findings.json").read_text() == "old" and os.listdir(out / "plots") == ["stale.png"]
    with Staging(str(out)) as stage:
        os.makedirs(stage.path("plots"))
        open(stage.path("plots/new.png"), "w").write("new plot")
        open(stage.path("findings.json"), "w").write("new")
        assert sorted(stage.commit()) == [str(out / "findings.json"), str(out / "plots")]
    assert sorted(p.name for p in out.iterdir()) == ["findings.json", "keep.txt", "plots"]
    assert (out / "findings.json").read_text() == "new" and os.listdir(out / "plots") == ["new.png"]


def test_run_child_stops_its_child_when_the_parent_is_interrupted(tmp_path):
    """The parent waits in run_child; SIGTERM to the parent (made an exception by run_cli) sends
    SIGTERM to the child and waits for it, so nothing keeps running after the parent has exited."""
    marker = tmp_path / "child.pid"
    (tmp_path / "child.py").write_text(f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\n"
                                       "time.sleep(600)\n")
    script = (
        "import sys\n"
        "from harness.errors import run_cli\n"
        "from harness.outputs import run_child\n"
        f"run_cli(lambda argv: run_child([sys.executable, {str(tmp_path / 'child.py')!r}]))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not marker.exists() or not marker.read_text():
        assert time.time() < deadline and parent.poll() is None
        time.sleep(0.1)
    child_pid = int(marker.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 143 and "terminated" in parent.stderr.read()
    with pytest.raises(ProcessLookupError):  # reaped by the parent, not orphaned
        os.kill(child_pid, 0)


INTERRUPT_AT = """
import pytest

def pytest_runtest_call(item):
    if item.name.startswith({name!r}):
        raise KeyboardInterrupt
"""


@pytest.mark.parametrize("interrupt_at, replaced", [("c0", False), ("c1", True)])
def test_an_interrupted_claims_run_replaces_findings_and_html_together_or_neither(pytester, interrupt_at, replaced):
    """Ctrl-C during a claims run with --html and --findings once replaced the old HTML with an
    empty report while the old findings stayed. Interrupted before any claim was recorded, both
    stay as they were; after one was, both are replaced (the findings marked incomplete)."""
    rows = [{**BASE, "id": f"c{i}", "source": "neutral", "metric": "sentiment", "direction": "equivalent",
             "margin": 1.0, "n_prompts": 4, "max_tokens": 3, "tier": "fast"} for i in range(2)]
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml(rows))
    pytester.makeconftest(INTERRUPT_AT.format(name=interrupt_at))
    findings, html = pytester.path / "pt.json", pytester.path / "pt.html"
    findings.write_text("old findings")
    html.write_text("old html")
    pytester.runpytest_subprocess(str(claims), "--findings", str(findings), "--html", str(html),
                                  "--self-contained-html", "-p", "no:cacheprovider", "-p", "no:randomly", "-q")
    if replaced:
        doc = json.loads(findings.read_text())
        assert doc["complete"] is False and [c["claim"]["id"] for c in doc["claims"]] == ["c0"]
        assert "c0" in html.read_text()
    else:
        assert (findings.read_text(), html.read_text()) == ("old findings", "old html")
    assert not [p.name for p in pytester.path.iterdir() if p.name.endswith(".tmp")]
