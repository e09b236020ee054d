"""The plan's jobs on Ray actors: ``--backend ray --ray-address auto|HOST:PORT --workers N``.

Each actor holds the models on its device (``num_gpus=1`` per actor where the cluster has GPUs,
one CPU otherwise) and generates whole jobs (:func:`harness.claims.plan.split_jobs`: a baseline
and some of its arms) with :func:`harness.claims.execute.execute`, as a local run would. The
generated runs come back to the driver, whose session then evaluates every claim, corrects,
decides and writes exactly as in-process. A worker that dies mid-job (killed, out of memory, its
node lost) has its job rerun on a fresh actor, up to :data:`RETRIES` times; findings are the
same either way, since a job's result does not depend on where or how often it ran.

Exactness: an actor uses the driver's torch thread count (Ray would give it one thread), so its
matrix products round as the driver's would; tokens equal a local run's, and log-prob metrics
agree to float rounding (a job packs fewer arms per batch than the whole group would).

Ray is an optional extra (``pip install 'causal-heads[ray]'``); nothing imports it unless
``--backend ray`` is given.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from harness.analysis.sweep import Sweep, sweep
from harness.claims.execute import Execution, execute
from harness.claims.plan import Group, Plan, split_jobs
from harness.core.errors import UserError
from harness.distributed.extensions import driver_extensions, install
from harness.model.device import placement
from harness.model.store import ModelStore

RETRIES = 3
DEFAULT_WORKERS = 2


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'causal-heads[ray]' (or pip install ray)") from None
    return ray


def check_address(address: str | None) -> str | None:
    """``auto``, ``HOST:PORT`` or None (a local cluster started for the run): a HOST:PORT that
    nothing answers on is an error now, before any work."""
    if address is None:
        return None
    if address == "auto":
        if not (os.environ.get("RAY_ADDRESS") or os.path.exists("/tmp/ray/ray_current_cluster")):
            raise UserError(
                "--ray-address auto: no Ray cluster is running on this machine (start one with "
                "`ray start --head`, or give HOST:PORT)"
            )
        return address
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray-address {address!r}: use auto or HOST:PORT (the head's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            speaks_grpc = _answers_http2(conn)
    except OSError as exc:
        raise UserError(
            f"--ray-address {address!r}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
            f"`ray start --head --port {port}` or check the address"
        ) from None
    if not speaks_grpc:  # ray.init would wait there for minutes, deaf to Ctrl-C
        raise UserError(
            f"--ray-address {address!r}: something answers there, but not a Ray cluster (its GCS speaks gRPC); "
            "check the port (the head's GCS port, 6379 by default)"
        )
    return address


# HTTP/2's client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers with a
# SETTINGS frame; an HTTP/1 server, a database or a closed socket does not
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _answers_http2(conn: socket.socket) -> bool:
    conn.settimeout(5)
    try:
        conn.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except OSError:
        return False
    return len(head) == 9 and head[3] == 0x04  # frame type SETTINGS


def use_cluster_token() -> None:
    """Ray 2.60's ``ray start --head`` turns token authentication on and writes the token to
    ``~/.ray/auth_token``, but a driver connecting to it does not present the token unless
    ``RAY_AUTH_MODE=token`` is set ("Authentication token is missing or incorrect"). Unless the user
    chose a mode, a driver that has a token uses it, as Ray's own CLI does."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray: the token file alone decides
        if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(os.path.expanduser("~/.ray/auth_token")):
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class RayBackend:
    """Generates a plan's jobs on ``workers`` Ray actors (see the module docstring)."""

    def __init__(
        self,
        address: str | None = None,
        workers: int = DEFAULT_WORKERS,
        *,
        threads: int | None = None,
        on_job_start: Callable[[int, int], None] | None = None,
        init_kwargs: dict | None = None,
    ) -> None:
        """``on_job_start(job_index, worker_pid)`` is called as each job is handed to a worker."""
        if workers < 1:
            raise UserError(f"--workers {workers}: must be at least 1")
        self.address, self.workers = address, workers
        self.threads = threads
        self.on_job_start = on_job_start
        self.init_kwargs = init_kwargs or {}
        self.reruns = 0  # jobs rerun after a worker died (reported by the bench and the tests)

    @classmethod
    def from_options(cls, address: str | None, workers: int | None) -> RayBackend:
        _import_ray()
        return cls(check_address(address), DEFAULT_WORKERS if workers is None else workers)

    # -- the driver ---------------------------------------------------------------------------
    def _connect(self):
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is None:
                kwargs.setdefault("num_cpus", self.workers)
            else:
                kwargs["address"] = self.address
                use_cluster_token()
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as exc:
                raise UserError(f"--ray-address {self.address!r}: cannot connect ({exc})") from None
        return ray

    def _workers(self, ray: Any, device: str, dtype: str, model_paths: dict) -> tuple[Any, dict]:
        """The actor class (a GPU each where the cluster has GPUs and the run asks for CUDA, one CPU
        otherwise) and the settings every actor starts with."""
        import torch

        gpus = ray.cluster_resources().get("GPU", 0) >= 1 and device.startswith("cuda")
        settings = {
            "model_paths": dict(model_paths),
            "device": "cuda:0" if gpus else device,  # each actor sees its own GPU as 0
            "dtype": dtype,
            "threads": self.threads or torch.get_num_threads(),
            "env": {k: v for k, v in os.environ.items() if k.startswith(("CAUSAL_HEADS_", "HF_"))},
            "extensions": driver_extensions(),  # a conftest's modes and interventions (checked before work)
        }
        worker_cls = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_restarts=0)(_Worker)
        return worker_cls, settings

    def _dispatch(self, ray: Any, worker_cls: Any, settings: dict, tasks: list[Callable[[Any], Any]]) -> list:
        """Each task (actor -> object ref) on an idle actor, as many actors as workers; a task whose
        actor dies is rerun on a fresh actor, up to :data:`RETRIES` times. Returns the results in
        task order."""

        def start():
            actor = worker_cls.remote(settings)
            return actor, ray.get(actor.pid.remote())

        idle = [start() for _ in range(min(self.workers, len(tasks)))]
        pending = deque(range(len(tasks)))
        running: dict[Any, tuple[int, tuple]] = {}
        attempts = [0] * len(tasks)
        outputs: list = [None] * len(tasks)
        try:
            while pending or running:
                while pending and idle:
                    j = pending.popleft()
                    actor, pid = idle.pop()
                    attempts[j] += 1
                    running[tasks[j](actor)] = (j, (actor, pid))
                    if self.on_job_start:
                        self.on_job_start(j, pid)
                ready, _ = ray.wait(list(running), num_returns=1)
                j, worker = running.pop(ready[0])
                try:
                    outputs[j] = ray.get(ready[0])
                    idle.append(worker)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    if attempts[j] > RETRIES:
                        raise RuntimeError(f"job {j} failed on {attempts[j]} workers; the last: {exc}") from exc
                    self.reruns += 1
                    pending.appendleft(j)
                    idle.append(start())  # a fresh actor in the dead one's place
        finally:
            for actor, _pid in idle + [w for _j, w in running.values()]:
                ray.kill(actor)
        return outputs

    def generate(self, plan: Plan, models: ModelStore) -> Execution:
        """Every run of ``plan``, generated on the actors (each with the driver's model paths and
        placement), and what each job's arms shared."""
        ray = self._connect()
        jobs = split_jobs(plan, self.workers)
        where = models.placement
        worker_cls, settings = self._workers(ray, where.device, where.dtype, models.model_paths)

        def task(job: Group) -> Callable[[Any], Any]:
            return lambda actor: actor.run.remote(job)

        done = Execution()
        for part in self._dispatch(ray, worker_cls, settings, [task(job) for job in jobs]):
            done.merge(part)  # a baseline computed by several jobs: all equal
        return done

    def sweep(
        self,
        model: str,
        targets: Sequence[str],
        sources: Sequence[str],
        emotion: str,
        *,
        mode: str,
        layers: Sequence[int],
        device: str,
        dtype: str,
    ) -> Sweep:
        """:func:`harness.analysis.sweep.sweep` over ``layers`` sharded by layer across the actors
        (round robin: deeper layers cost less). A layer's Δ does not depend on which other layers
        a sweep holds, so the merged result equals a local sweep's; the baseline is the shard's
        that holds the deepest layer, as in a local sweep."""
        import numpy as np

        ray = self._connect()
        shards = [list(layers[i :: self.workers]) for i in range(self.workers) if layers[i :: self.workers]]
        worker_cls, settings = self._workers(ray, device, dtype, {})
        targets, sources = list(targets), list(sources)

        def task(shard):
            return lambda actor: actor.sweep.remote(model, targets, sources, emotion, mode, shard)

        results = self._dispatch(ray, worker_cls, settings, [task(shard) for shard in shards])
        merged = results[max(range(len(shards)), key=lambda i: max(shards[i]))]
        merged.deltas = np.sum([r.deltas for r in results], axis=0)
        return merged


class _Worker:
    """A Ray actor: the models on its device (loaded once, kept across jobs), generating jobs."""

    def __init__(self, settings: dict) -> None:
        import torch

        os.environ.update(settings["env"])
        install(settings.get("extensions", b""))
        torch.set_num_threads(settings["threads"])
        self.models = ModelStore(settings["model_paths"], placement(settings["device"], settings["dtype"]))

    def pid(self) -> int:
        return os.getpid()

    def sweep(
        self, model: str, targets: Sequence[str], sources: Sequence[str], emotion: str, mode: str, layers: Sequence[int]
    ) -> Sweep:
        return sweep(self.models(model), targets, sources, emotion, layers=layers, mode=mode)

    def run(self, job: Group) -> Execution:
        """One job's runs (planned, as a local run generates a group)."""
        return execute(Plan((job,)), self.models)
