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

from harness.core.outputs import PendingFiles, Staging, write_temporary

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
        "from harness.core.errors import run_cli\n"
        "from harness.core.outputs import run_child\n"
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
    old_findings, old_html = '{"schema": "causal-heads/findings", "claims": []}', "<!DOCTYPE html><p>old</p>"
    findings.write_text(old_findings)  # documents of their kinds: anything else is refused (test_plugin_habits)
    html.write_text(old_html)
    res = pytester.runpytest_subprocess(str(claims), "--findings", str(findings), "--html", str(html),
                                        "--self-contained-html", "-p", "no:cacheprovider", "-p", "no:randomly", "-q")
    # pytest-html's own line named the staged copy, also for a report the plugin then discarded
    assert ".tmp" not in res.stdout.str()
    assert ("Generated html report: file://" in res.stdout.str()) == replaced
    assert ("no html report written" in res.stdout.str()) != replaced
    if replaced:
        doc = json.loads(findings.read_text())
        assert doc["complete"] is False and [c["claim"]["id"] for c in doc["claims"]] == ["c0"]
        assert "c0" in html.read_text()
    else:
        assert (findings.read_text(), html.read_text()) == (old_findings, old_html)
    assert not [p.name for p in pytester.path.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------- class 5: every output location checked before the work
# where the commands' jobs look load_model up (harness.analysis.*_job, once imported)
JOB_MODULES = ("sweep_job", "screen_job", "calibrate_job", "circuit_job", "patch_job")


def _no_model_load(monkeypatch, module: str) -> None:
    """Loading a model fails the test: the command must stop before it (patched where the
    command or the job it calls looks the function up)."""
    import importlib

    for mod in (importlib.import_module(module), *(importlib.import_module(f"harness.analysis.{j}") for j in JOB_MODULES)):
        if hasattr(mod, "load_model"):
            monkeypatch.setattr(mod, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))


@pytest.mark.parametrize("module, args, message", [
    ("harness.cli.sweep", ["--model", "tiny-gpt2", "--emotion", "gratitude", "--output", "{f}/s.json"],
     "--output '{f}/s.json': {f} is a file, not a folder"),
    ("harness.cli.sweep", ["--model", "tiny-gpt2", "--emotion", "gratitude", "--write-claims", "{d}"],
     "--write-claims '{d}': the extension must be one of .toml"),
    ("harness.cli.sweep", ["--model", "tiny-gpt2", "--emotion", "gratitude", "--output", "{d}/x.txt"],
     "--output '{d}/x.txt': the extension must be one of .json"),
    ("harness.cli.screen", ["--model", "tiny-gpt2", "--emotion", "gratitude", "--output", "{f}/deeper/s.json"],
     "--output '{f}/deeper/s.json': {f} is a file, not a folder"),
    ("harness.cli.patch", ["--model", "tiny-gpt2", "--head-spec", "1:10", "--emotion", "gratitude", "--output",
                           "{d}/r.json", "--plots-dir", "{f}"], "--plots-dir '{f}': it is a file, not a folder"),
    ("harness.cli.patch", ["--model", "tiny-gpt2", "--head-spec", "1:10,1:10", "--emotion", "gratitude",
                           "--output", "{d}/r.json"], "head 1:10 is listed more than once in head spec '1:10,1:10'"),
    ("harness.cli.patch", ["--model", "tiny-gpt2", "--head-spec", "1:*,1:3", "--emotion", "gratitude",
                           "--output", "{d}/r.json"], "head 1:3 is listed more than once in head spec '1:*,1:3'"),
    ("harness.cli.report", ["{d}/none.json", "--markdown", "{d}"], "--markdown '{d}': the extension must be one of .md"),
    ("harness.cli.browser", ["{d}/r.html", "--timeout", "nan"], "--timeout nan is invalid: must be a number of"),
    ("harness.cli.browser", ["{d}/r.html", "--timeout", "-1"], "--timeout -1.0 is invalid"),
    ("harness.cli.browser", ["{d}/r.html", "--screenshot", "{f}/s.png"], "--screenshot '{f}/s.png': {f} is a file"),
])
def test_bad_output_locations_are_refused_before_any_work(tmp_path, monkeypatch, main_in_process, module, args,
                                                          message):
    """Reliability class 5: unwritable outputs once gave tracebacks after the whole run."""
    _no_model_load(monkeypatch, module)
    (tmp_path / "file").write_text("a file, not a folder")
    fill = {"f": str(tmp_path / "file"), "d": str(tmp_path)}
    proc = main_in_process(module, *(a.format(**fill) for a in args))
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert message.format(**fill) in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_a_full_disk_is_refused_before_the_work_and_one_line_when_it_fills_during_it(tmp_path, monkeypatch,
                                                                                     main_in_process):
    import errno
    import shutil
    from collections import namedtuple

    from harness.core.errors import UserError
    from harness.core.results import check_writable

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(100, 100, 0))
    with pytest.raises(UserError, match=f"--out '{tmp_path}/o': no space left on the disk of {tmp_path}"):
        check_writable("--out", str(tmp_path / "o"), folder=True)
    monkeypatch.undo()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    doc = tmp_path / "f.json"
    doc.write_text(json.dumps({"schema": "causal-heads/findings", "schema_version": 1, "claims": []}))
    proc = main_in_process("harness.cli.report", str(doc), "--markdown", str(tmp_path / "r.md"), "--plots-dir",
                           str(tmp_path / "p"))
    assert proc.returncode == 2 and proc.stderr == f"error: {tmp_path / 'r.md'}: No space left on device\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temporary left


def test_pytest_findings_in_a_bad_place_stops_before_any_claim_runs(pytester):
    claims = pytester.path / "claims.toml"
    claims.write_text(claims_toml([{**BASE, "tier": "fast", "n_prompts": 4, "max_tokens": 3}]))
    (pytester.path / "file").write_text("x")
    result = pytester.runpytest_subprocess(str(claims), "--findings", str(pytester.path / "file" / "f.json"),
                                           "-p", "no:cacheprovider", "-q")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 2, out
    assert f"--findings '{pytester.path / 'file' / 'f.json'}': {pytester.path / 'file'} is a file, not a folder" in out
    assert "claim 1/1" not in out and "Traceback" not in out


# ------------------------------------------- class 2: another kind of file is not replaced without --force
def test_an_output_holding_another_kind_of_document_needs_force(tmp_path, monkeypatch, main_in_process):
    """Reliability class 2: ``--output`` on a prompt set or a findings document replaced it."""
    for module in ("harness.cli.patch", "harness.cli.sweep", "harness.cli.screen", "harness.cli.calibrate"):
        _no_model_load(monkeypatch, module)
    prompts = tmp_path / "joy_prompts.json"
    prompts.write_text(json.dumps({"format": "causal-heads/prompts", "version": 1, "prompts": ["x"]}))
    findings = tmp_path / "f.json"
    findings.write_text(json.dumps({"schema": "causal-heads/findings", "schema_version": 1, "claims": []}))
    notes = tmp_path / "notes.json"
    notes.write_text("my own notes")
    for module, path, held, args in (
        ("harness.cli.patch", prompts, "'causal-heads/prompts'", ["--head-spec", "1:10", "--emotion", "gratitude"]),
        ("harness.cli.sweep", findings, "'causal-heads/findings'", ["--emotion", "gratitude"]),
        ("harness.cli.screen", notes, None, ["--emotion", "gratitude"]),
        ("harness.cli.calibrate", findings, "'causal-heads/findings'", []),
    ):
        before = path.read_bytes()
        proc = main_in_process(module, "--model", "tiny-gpt2", *args, "--output", str(path))
        shown = f"a {held} document" if held else "a file that is not one of ours"
        assert proc.returncode == 2 and f"--output {str(path)!r} holds {shown}" in proc.stderr, (module, proc.stderr)
        assert "pass --force to replace it" in proc.stderr and path.read_bytes() == before
    # with --force the check steps aside (the run then goes on: here it stops at the model load)
    with pytest.raises(pytest.fail.Exception, match="the model was loaded"):
        main_in_process("harness.cli.sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--output",
                        str(findings), "--force")
