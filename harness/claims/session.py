"""The claims of one run, through the pipeline: resolve, plan, execute, evaluate, correct.

A :class:`ClaimSession` wires the steps together for one run's claims and keeps what they
produced, so that the pytest plugin, :func:`harness.evaluate` and the benchmarks share one path:

1. :mod:`~harness.claims.resolve`: each claim once against its model (heads, prompts with their
   files' hashes, settings, the key of every run it compares);
2. :mod:`~harness.claims.plan`: every run the claims need, once, grouped by baseline;
3. :mod:`~harness.claims.execute`: the plan's runs generated (here or on a backend's workers);
4. :mod:`~harness.claims.evaluation`: each claim's statistics on its runs (a pure function);
5. :mod:`~harness.claims.family`: the p-values corrected across the run's claims, then verdicts.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

from harness.claims.evaluation import evaluate_claim
from harness.claims.execute import Backend, Execution, execute
from harness.claims.family import correct_family
from harness.claims.plan import Plan, make_plan
from harness.claims.registry import preregistration
from harness.claims.resolve import ResolvedClaim, Resolver, Unresolved
from harness.claims.result import ClaimResult, progress_line
from harness.claims.run_cache import RunCache
from harness.claims.spec import Claim
from harness.model.device import parse_batch_size, parse_memory, placement
from harness.model.store import ModelStore


class ClaimSession:
    """One run's claims, their runs and their results (see the module docstring)."""

    def __init__(
        self,
        claims: list[Claim],
        *,
        model_paths: dict[str, str] | None = None,
        correction: str = "holm",
        n_resamples: int = 10_000,
        rerun_options: str = "",
        progress: Callable[[str], None] | None = None,
        planned: bool = True,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int | str | None = None,
        backend: Backend | None = None,
        models: ModelStore | None = None,
        subset_of: int | None = None,
        cache: RunCache | None = None,
        max_memory: int | str | None = None,
    ) -> None:
        """``device``/``dtype``: where and in what precision every model runs (checked here, before
        any work); ``batch_size``: rows per forward pass for every run (an integer or ``"auto"``;
        None: 128); ``backend``: what generates the plan's groups (None: this process; see
        :mod:`harness.distributed`); ``models``: a store of loaded models to use (else one is made
        from ``model_paths``, ``device`` and ``dtype``); ``planned``: generate each group's runs
        with shared lower layers (False: every run alone); ``subset_of``: the size of the family
        these claims were selected from, when they are a strict subset of it
        (:func:`harness.claims.family.correct_family`); ``cache``: the run cache to read runs
        from and store them in (:mod:`harness.claims.run_cache`; None: every run generated);
        ``max_memory``: the memory budget that sizes the batches of arms (bytes or ``"4GB"``;
        None: half the machine's memory, :func:`harness.model.device.default_memory_budget`)."""
        self.models = models or ModelStore(model_paths, placement(device, dtype))
        self.resolver = Resolver(self.models, parse_batch_size(batch_size))
        self.claims = list(claims)
        self.correction = correction
        self.subset_of = subset_of
        self.n_resamples = n_resamples
        self.rerun_options = rerun_options  # e.g. "--model gpt2=/dir --profile greedy", for rerun commands
        self.progress = progress  # called with one line per generated group and per evaluated claim
        self.planned = planned
        self.backend = backend
        self.cache = cache
        self.max_memory = parse_memory(max_memory)
        self.execution: Execution | None = None
        self._resolved: dict[str, ResolvedClaim | Unresolved] | None = None
        self._results: dict[str, ClaimResult] | None = None

    @property
    def model_paths(self) -> dict[str, str]:
        return self.models.model_paths

    def resolved(self) -> dict[str, ResolvedClaim | Unresolved]:
        """Every claim resolved (once), by id, in claim order."""
        if self._resolved is None:
            self._resolved = {}
            for c in self.claims:
                try:
                    self._resolved[c.id] = self.resolver(c)
                except Exception as exc:  # the claim's result reports it
                    self._resolved[c.id] = _unresolved(c, exc, self.models)
        return self._resolved

    @property
    def data_files(self) -> dict[str, dict[str, str]]:
        """The prompt sets and keyword lists the claims read: path and sha256 (regress compares them)."""
        out: dict[str, dict[str, str]] = {}
        for rc in self.resolved().values():
            if isinstance(rc, ResolvedClaim):
                out.update(rc.data_files)
        return out

    def plan(self) -> Plan:
        """Every generation run the resolved claims need, each once, grouped by baseline."""
        return make_plan([rc.runs for rc in self.resolved().values() if isinstance(rc, ResolvedClaim)])

    def run_plan(self, plan: Plan) -> Execution:
        """Generate the plan's runs (planned or arm by arm, here or on the backend)."""
        done = execute(
            plan,
            self.models,
            planned=self.planned,
            backend=self.backend,
            progress=self.progress,
            cache=self.cache,
            max_memory=self.max_memory,
        )
        if self.execution is None:
            self.execution = done
        else:
            self.execution.merge(done)
        return self.execution

    @property
    def sharing_by_group(self) -> list[list[dict]]:
        """Per group generated planned: what each of its arms shared with the baseline."""
        return [] if self.execution is None else self.execution.sharing

    def provenance(self) -> dict:
        """Each model the run loaded: its name, source, shape and weights hash."""
        return self.models.provenance()

    def results(self) -> dict[str, ClaimResult]:
        """Evaluate every claim once, then correct p-values across them and decide verdicts."""
        if self._results is None:
            runs = self.run_plan(self.plan()) if self.execution is None else self.execution
            evaluated = []
            for k, (cid, rc) in enumerate(self.resolved().items(), 1):
                if isinstance(rc, ResolvedClaim):
                    r = evaluate_claim(rc, runs, n_resamples=self.n_resamples, options=self.rerun_options)
                else:
                    r = ClaimResult(claim=rc.claim, options=self.rerun_options, model=rc.model, error=rc.error)
                    r.per_prompt = {"traceback": rc.traceback}
                evaluated.append(r)
                if self.progress:
                    self.progress(f"claim {k}/{len(self.claims)} {cid}: {progress_line(r)} ({r.seconds:.0f} s)")
            correct_family(evaluated, self.correction, subset_of=self.subset_of)
            registered = preregistration(self.claims)  # claims whose file has a registry; records this evaluation
            for r in evaluated:
                r.preregistration = registered.get(r.claim.id)
            self._results = {r.claim.id: r for r in evaluated}
        return self._results


def _unresolved(c: Claim, exc: Exception, models: ModelStore) -> Unresolved:
    model = models.loaded[c.model].provenance() if c.model in models.loaded else None
    return Unresolved(c, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6), model)
