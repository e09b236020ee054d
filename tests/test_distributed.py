"""The Ray backend: a local cluster on 127.0.0.1 (2 CPU workers, tiny models), started here.

Findings on Ray equal a local run's (same verdicts and p-values, per-prompt effects to 1e-6),
also when a worker is killed mid-job; an unreachable cluster is one line and exit 2, before any
work and with nothing written."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter

import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'causal-heads[ray]')")

from harness.claims.plan import split_jobs  # noqa: E402
from harness.claims.session import ClaimSession  # noqa: E402
from harness.core.errors import UserError  # noqa: E402
from harness.distributed.bench import _distributed_claims, bench_distributed, findings_difference  # noqa: E402
from harness.distributed.ray_backend import RayBackend, check_address  # noqa: E402

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs; stopped (and the driver disconnected) after.
    Ray's token authentication is off for this private cluster (the head and this driver would
    otherwise race over ~/.ray/auth_token with any other Ray run on the machine)."""
    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    start = [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp)]
    proc = subprocess.run(start, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, check=False)
        shutil.rmtree(temp, ignore_errors=True)
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous


def test_the_plan_splits_into_jobs_with_their_baseline():
    claims = _distributed_claims("tiny-gpt2", 8)
    plan = ClaimSession(claims).plan()
    jobs = split_jobs(plan, 2)
    arms = [a.key for g in plan.groups for a in g.arms]
    assert Counter(a.key for j in jobs for a in j.arms) == Counter(arms) and len(set(arms)) == len(arms)  # each once
    assert all(j.baseline in {g.baseline for g in plan.groups} for j in jobs) and len(jobs) >= 2


def test_findings_on_ray_equal_a_local_run(cluster):
    res = bench_distributed("tiny-gpt2", 2, 10, cluster)
    assert res["identical"], res["by_claim"]
    assert res["max_per_prompt_diff"] <= 1e-6 and res["reruns"] == 0
    assert {d["verdict"] for d in res["by_claim"].values()} - {None}


@pytest.mark.slow  # ~12 s; test_findings_on_ray_equal_a_local_run stays per commit
def test_a_worker_killed_mid_job_has_its_job_rerun_and_the_findings_stay(cluster):
    claims = _distributed_claims("tiny-llama-gqa", 8)
    local = ClaimSession(claims).results()
    killed: list[int] = []

    def kill_first(job: int, pid: int) -> None:
        if not killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    backend = RayBackend(cluster, 2, on_job_start=kill_first)
    remote = ClaimSession(claims, backend=backend).results()
    assert killed and backend.reruns >= 1
    for cid in local:
        diff = findings_difference(local[cid], remote[cid])
        assert diff["same"], (cid, diff)


def test_an_unreachable_cluster_is_one_line_and_exit_2_with_nothing_written(tmp_path, monkeypatch):
    from conftest import run_main

    port = _free_port()  # nothing listens there
    with pytest.raises(UserError, match="no Ray cluster answers there"):
        check_address(f"127.0.0.1:{port}")
    with pytest.raises(UserError, match="use auto or HOST:PORT"):
        check_address("127.0.0.1")
    monkeypatch.chdir(tmp_path)
    proc = run_main("harness", "evidence", "--model", "tiny-gpt2", "--out", "out", "--backend", "ray",
                    "--ray-address", f"127.0.0.1:{port}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no Ray cluster answers there" in proc.stderr and not (tmp_path / "out").exists()


def test_a_sweep_sharded_by_layer_equals_a_local_sweep(cluster, tiny_llama):
    from harness.analysis.sweep import sweep
    from harness.run.prompts import load_emotion_prompts, load_prompt_set

    targets, sources = load_prompt_set("neutral").head(6), load_emotion_prompts("gratitude").head(6)
    local = sweep(tiny_llama, targets, sources, "gratitude")
    backend = RayBackend(cluster, 2)
    layers = list(range(tiny_llama.shape.n_layers))
    remote = backend.sweep("tiny-llama-gqa", targets, sources, "gratitude", mode="z", layers=layers,
                           device="cpu", dtype="float32")
    assert remote.deltas.shape == local.deltas.shape and abs(remote.deltas - local.deltas).max() <= 1e-6
    assert abs(remote.baseline - local.baseline).max() <= 1e-6 and abs(local.deltas).max() > 0


@pytest.mark.slow  # ~13 s
def test_a_mode_registered_in_the_driver_runs_on_the_actors(cluster, tiny_llama):
    """A mode registered in a conftest.py (here: this test module, which no actor can import) was
    unknown on the Ray actors and failed every claim of the run; the driver now sends it."""
    import torch

    from harness.patch.modes import MODES, register_mode

    @register_mode("half_z", needs=("z",))
    def half_z(r):
        z = r.source.z[r.layer][r.index][:, r.head]
        return 0.5 * (z.mean(0).expand(len(r.qs_t), -1) if r.qs_s is None else z[r.qs_s]) + torch.zeros(1)

    try:
        claims = [c.replace(patch_mode="half_z") for c in _distributed_claims("tiny-llama-gqa", 6)[:2]]
        local = ClaimSession(claims).results()
        remote = ClaimSession(claims, backend=RayBackend(cluster, 2)).results()
        for cid in local:
            assert local[cid].error is None and remote[cid].error is None, remote[cid].error
            assert findings_difference(local[cid], remote[cid])["same"], cid
    finally:
        MODES.pop("half_z", None)


@pytest.mark.slow
def test_the_readme_ray_recipe_works_against_a_cluster_with_rays_default_token_authentication(tmp_path):
    """Ray 2.60's `ray start --head` turns token authentication on; the driver did not present the
    token ("Authentication token is missing or incorrect") and every claim failed. The README's
    recipe, run as written (on the tiny model), now gives the local run's findings."""
    import json

    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = _free_port()
    import tempfile

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    start = [RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp]
    # a machine where any local ray.init() has run holds ~/.ray/auth_token (Ray writes it); with a
    # token there, `ray start --head` turns token authentication on by default
    token = subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True, text=True, timeout=120,
                           check=False, env=env)  # fmt: skip
    assert token.returncode == 0 and (home / ".ray" / "auth_token").is_file(), token.stderr[-2000:]
    proc = subprocess.run(start, capture_output=True, text=True, timeout=180, check=False, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        assert "Token authentication is enabled" in proc.stdout + proc.stderr
        project = tmp_path / "project"
        (project / "causal_tests").mkdir(parents=True)
        (project / "causal_tests" / "claims.toml").write_text(
            "".join(
                f'[[claim]]\nid = "c{h}"\nmodel = "tiny-gpt2"\nheads = "1:{h}"\npatch_mode = "z"\n'
                f'source = "gratitude"\nmetric = "gratitude_logprob"\ndirection = "increase"\nn_prompts = 6\n'
                f'max_tokens = 3\ntier = "fast"\n\n'
                for h in (3, 10)
            )
        )
        causal_heads = os.path.join(os.path.dirname(sys.executable), "causal-heads")
        runs = {}
        for where, extra in (("local", []), ("ray", ["--backend", "ray", "--ray-address", f"127.0.0.1:{port}",
                                                     "--workers", "2"])):  # fmt: skip
            run = subprocess.run([causal_heads, "evidence", "--model", "tiny-gpt2", "--out", where, *extra],
                                 cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False)
            assert run.returncode == 0, (where, run.stdout[-3000:], run.stderr[-3000:])
            runs[where] = json.loads((project / where / "findings.json").read_text())
        regress = subprocess.run([causal_heads, "regress", "local/findings.json", "ray/findings.json"], cwd=project,
                                 env=env, capture_output=True, text=True, timeout=300, check=False)
        assert regress.returncode == 0 and "no changes" in regress.stdout, regress.stdout + regress.stderr
        for a, b in zip(runs["local"]["claims"], runs["ray"]["claims"], strict=True):
            assert a["verdict"] == b["verdict"] and a["p_adjusted"] == b["p_adjusted"]
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, check=False, env=env)
        shutil.rmtree(temp, ignore_errors=True)
