"""Outputs the jobs do not own, and checks that passed on nothing (reliability round 2, classes 7
and 10): each is one line, exit 2, before any work."""

from __future__ import annotations

import pytest


def test_evidence_never_replaces_files_it_did_not_write(tmp_path, monkeypatch, main_in_process):
    """`evidence --out .` deleted a user's plots/mine.png and overwrote their summary.md."""
    from harness.analysis.evidence import check_out_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "causal_tests").mkdir()
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mine.png").write_bytes(b"\x89PNG\r\n\x1a\nmy own figure")
    (tmp_path / "summary.md").write_text("# My notes\n")
    proc = main_in_process("harness", "evidence", "--model", "tiny-gpt2", "--out", ".")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "holds files this job did not write and would replace (plots/mine.png, summary.md)" in proc.stderr
    assert (tmp_path / "plots" / "mine.png").exists() and (tmp_path / "summary.md").read_text() == "# My notes\n"
    # files a job wrote (recognised by what they hold) and other names are fine; --force replaces
    (tmp_path / "plots" / "mine.png").unlink()
    (tmp_path / "plots" / "forest_c.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "summary.md").write_text("# Evidence\n\n1 claim\n")
    (tmp_path / "findings.json").write_text('{\n "schema": "causal-heads/findings",\n "claims": []\n}')
    (tmp_path / "notes.txt").write_text("never touched")
    check_out_folder(str(tmp_path), force=False)
    (tmp_path / "evidence.html").write_text("<p>my page</p>")
    with pytest.raises(Exception, match="evidence.html"):
        check_out_folder(str(tmp_path), force=False)
    check_out_folder(str(tmp_path), force=True)


def test_the_shipped_reports_folder_is_recognised_as_the_jobs_own():
    import os

    from harness.analysis.evidence import check_out_folder

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    check_out_folder(os.path.join(root, "reports"), force=False)


@pytest.mark.parametrize("setup, args, message", [
    ("no causal_tests", ["--model", "tiny-gpt2"], "no causal_tests/ folder in"),
    ("", ["--model", "tiny-gpt2=/no/such/dir"], "'/no/such/dir' is not a directory"),
], ids=["missing causal_tests", "bad NAME=PATH"])  # fmt: skip
def test_evidence_checks_its_inputs_before_starting_pytest(tmp_path, monkeypatch, main_in_process, setup, args,
                                                           message):  # fmt: skip
    """A missing causal_tests/ or a bad --model NAME=PATH started pytest and reported "the claims
    run broke" (exit 3)."""
    monkeypatch.chdir(tmp_path)
    if setup != "no causal_tests":
        (tmp_path / "causal_tests").mkdir()
    proc = main_in_process("harness", "evidence", *args, "--out", "out")
    assert proc.returncode == 2 and message in proc.stderr and not (tmp_path / "out").exists(), proc.stderr


def test_sweep_write_claims_never_replaces_a_hand_written_file(tmp_path, main_in_process):
    """`sweep --write-claims` replaced a hand-written 16-claim file without --force."""
    hand = tmp_path / "claims.toml"
    hand.write_text('# my claims\n[[claim]]\nid = "mine"\n')
    proc = main_in_process("harness", "sweep", "--model", "tiny-gpt2", "--emotion", "gratitude", "--n-prompts", "4",
                           "--output", str(tmp_path / "s.json"), "--write-claims", str(hand))  # fmt: skip
    assert proc.returncode == 2 and "holds claims a sweep did not write" in proc.stderr, proc.stderr
    assert hand.read_text().startswith("# my claims") and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("where", ["missing", "a file", "empty"])
def test_prompts_stats_on_nothing_is_an_error(tmp_path, monkeypatch, main_in_process, where):
    """`prompts stats` on a missing folder or a file printed an empty table, exit 0."""
    target = tmp_path / "p"
    if where == "a file":
        target.write_text("x")
    elif where == "empty":
        target.mkdir()
    monkeypatch.setenv("CAUSAL_HEADS_PROMPTS", str(target))
    proc = main_in_process("harness", "prompts", "stats", "--model", "tiny-gpt2")
    assert proc.returncode == 2 and "$CAUSAL_HEADS_PROMPTS" in proc.stderr and proc.stdout == "", proc.stderr


def test_random_heads_below_zero_is_refused_when_no_claim_has_a_control(pytester):
    pytester.makefile(".toml", claims='[[claim]]\nid = "c"\nmodel = "tiny-gpt2"\nheads = "1:3"\npatch_mode = "z"\n'
                                      'source = "gratitude"\nmetric = "sentiment"\ndirection = "increase"\n'
                                      'tier = "fast"\n')  # fmt: skip
    res = pytester.runpytest_subprocess("--random-heads", "-1", "-p", "no:cacheprovider", "-q")
    assert res.ret == 2 and "--random-heads -1: must be in [0, 1000]" in res.stdout.str() + res.stderr.str()


def test_workers_zero_is_refused_not_two():
    pytest.importorskip("ray")
    from harness.core.errors import UserError
    from harness.distributed.ray_backend import RayBackend

    with pytest.raises(UserError, match="--workers 0: must be at least 1"):
        RayBackend.from_options(None, 0)


def test_an_address_where_something_else_answers_is_refused_at_once():
    """An address where a non-Ray service answers hung ray.init past 400 s, deaf to SIGINT."""
    import socket
    import threading

    from harness.core.errors import UserError
    from harness.distributed.ray_backend import check_address

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():  # an HTTP/1 service
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(UserError, match="something answers there, but not a Ray cluster"):
        check_address(f"127.0.0.1:{server.getsockname()[1]}")
    server.close()


def test_a_head_outside_the_model_stops_the_run_at_collection(pytester):
    """Issue 40: a head outside the model (40:1 on the 30-layer SmolLM2) failed only after the model
    loaded and the other claims generated. The model's config is read at collection (no weights):
    the run stops there in one message, with no test run."""
    rows = ('[[claim]]\nid = "ok"\nmodel = "smollm2-135m"\nheads = "21:1"\npatch_mode = "z"\nsource = "gratitude"\n'
            'metric = "sentiment"\ndirection = "increase"\n\n'
            '[[claim]]\nid = "bad"\nmodel = "smollm2-135m"\nheads = "40:1"\npatch_mode = "z"\nsource = "gratitude"\n'
            'metric = "sentiment"\ndirection = "increase"\n')  # fmt: skip
    pytester.makefile(".toml", claims=rows)
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--findings", "f.json")
    out = res.stdout.str() + res.stderr.str()
    assert res.ret == 2, out
    assert "claim 'bad': field 'heads' = '40:1': head 40:1 is out of range for smollm2-135m (30 layers × 9 heads)" in out
    assert "passed" not in out and "failed" not in out and not (pytester.path / "f.json").exists()


def test_the_config_check_reads_every_head_field_and_skips_receiver_words():
    from harness.claims.shape_check import shape_problem
    from harness.claims.spec import Claim

    base = {"id": "p", "model": "groundtruth-planted", "kind": "path", "senders": "0:1", "patch_mode": "z", "source": "gratitude",
            "metric": "gratitude_logprob", "direction": "increase"}  # fmt: skip
    assert shape_problem(Claim(**base, receivers="direct")) is None
    assert shape_problem(Claim(**base, receivers="direct,1:3")) is None  # 2 layers x 4 heads, from its config
    field, value, why = shape_problem(Claim(**base, receivers="direct,1:4"))
    assert (field, value) == ("receivers", "direct,1:4") and "head 1:4 is out of range for groundtruth-planted" in why
