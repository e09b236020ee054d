"""Run the real pipeline on a ground-truth model, draw by draw.

One draw (:func:`run_draw`): its own prompt pairs and seed; on its discovery prompts the
attention screen, the attribution screen and the causal sweep (each ranks every head) and
``--write-claims`` from the sweep; on its confirmation prompts (drawn apart from them) the
written claims and the hand claims of :mod:`harness.validation.hand_claims`, evaluated as one
family by :func:`harness.analysis.evaluate.evaluate` (exactly as ``pytest`` would); and
every claim read against the model's truth (:func:`harness.validation.truth.classify`). Nothing
here decides a verdict: it records what the suite said and what the truth says.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.analysis.evaluate import evaluate
from harness.analysis.screen_job import ScreenOptions, run_screen
from harness.analysis.sweep_job import SweepOptions, run_sweep, write_sweep_claims
from harness.claims.result import ClaimResult
from harness.claims.spec import Claim, load_claims, with_overrides
from harness.model import groundtruth
from harness.validation.draws import Draw, make_draws, prompts_from, write_draw
from harness.validation.hand_claims import hand_claims
from harness.validation.truth import ModelTruth, classify

RANKINGS = ("attention_screen", "attribution_screen", "sweep")


@dataclass(frozen=True)
class Settings:
    """What every draw of a validation run uses."""

    n_prompts: int = 24
    random_heads: int = 3  # a single head's layer has 3 other heads on these models
    claim_heads: int = 3
    max_tokens: int = 30
    correction: str = "holm"
    bootstrap: int = 200  # the sweep's prompt resamples for selection stability


@dataclass(frozen=True)
class ClaimOutcome:
    """One claim of one draw: where it came from, what the truth says, what the suite said."""

    id: str
    origin: str  # "sweep" (written by --write-claims) or "hand"
    truth: str | None  # "true", "false" or None (the truth does not decide it)
    equivalence: bool
    verdict: str  # supported / not supported / refuted / error
    effect: float | None
    p_adjusted: float | None
    random_control_passed: bool | None  # None: no random-head control
    text_changed: int | None
    n: int | None
    label: str | None = None  # exploratory / confirmatory against the sweep that wrote it (sweep claims)


@dataclass
class DrawResult:
    """One draw: the rank of each causal head in each ranking, and every claim's outcome."""

    model: str
    index: int
    seed: int
    ranks: dict[str, dict[str, int]]  # ranking -> causal head -> rank (1 = first)
    selection: dict[str, float]  # head -> share of the sweep's prompt resamples that selected it
    claims: list[ClaimOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rank(rows: list[dict[str, Any]], head: str) -> int:
    order = [r["head"] for r in rows]
    return order.index(head) + 1 if head in order else len(order) + 1


def _outcome(r: ClaimResult, origin: str, truth: ModelTruth) -> ClaimOutcome:
    control = r.random_control
    changed = (r.text_changed or {}).get("patched_vs_versus" if r.claim.versus else "patched_vs_baseline")
    return ClaimOutcome(
        id=r.claim.id,
        origin=origin,
        truth=classify(r.claim, truth),
        equivalence=r.claim.direction == "equivalent",
        verdict=r.verdict.value if r.verdict is not None else "error",
        effect=(r.effect or {}).get("mean"),
        p_adjusted=r.p_adjusted,
        random_control_passed=None if control is None else bool(control["beats_all"]),
        text_changed=changed,
        n=(r.text_changed or {}).get("n"),
        label=(r.selection or {}).get("label"),
    )


def _screens_and_sweep(
    truth: ModelTruth, draw: Draw, s: Settings, folder: str
) -> tuple[dict, dict[str, float], list[Claim]]:
    """The three rankings, each head's selection share over the sweep's prompt resamples, and the
    claims the sweep writes (with the draw's seed)."""
    name = groundtruth.registered_name(truth.model)
    common: dict[str, Any] = {"emotion": truth.emotion, "model": name, "target": truth.target,
                              "n_prompts": s.n_prompts, "seed": draw.seed}  # fmt: skip
    attention = run_screen(ScreenOptions(**common), os.path.join(folder, "screen_attention.json"))
    attribution = run_screen(
        ScreenOptions(**common, method="attribution"), os.path.join(folder, "screen_attribution.json")
    )
    sweep_opts = SweepOptions(**common, combine=s.claim_heads, bootstrap=s.bootstrap, select_k=s.claim_heads)
    job = run_sweep(sweep_opts, os.path.join(folder, "sweep.json"))
    selection = {r["head"]: r["selected_share"] for r in job.rows}
    ranks = {
        key: {h: _rank(rows, h) for h in truth.causal}
        for key, rows in (
            ("attention_screen", attention.rows),
            ("attribution_screen", attribution.rows),
            ("sweep", job.rows),
        )  # fmt: skip
    }
    path = os.path.join(folder, "sweep_claims.toml")
    written = write_sweep_claims(job, path, claim_heads=s.claim_heads, random_heads=s.random_heads, claim_metric=truth.claim_metric,
                                 command="causal-heads validate")  # fmt: skip
    claims = load_claims(path) if written else []
    return ranks, selection, [with_overrides(c, seed=draw.seed, max_tokens=tokens(truth, s)) for c in claims]


def tokens(truth: ModelTruth, s: Settings) -> int:
    """Tokens generated per claim: the run's, cut to what the model's truth decides."""
    return min(s.max_tokens, truth.decided_tokens or s.max_tokens)


def run_draw(truth: ModelTruth, draw: Draw, s: Settings, workdir: str, progress: Callable[[str], None]) -> DrawResult:
    """Every step of the pipeline on one draw (see the module docstring); files go to ``workdir``."""
    start = time.perf_counter()
    folder = os.path.join(workdir, truth.model, f"draw_{draw.index:03d}")
    discovery, confirmation = (os.path.join(folder, part) for part in ("discovery", "confirmation"))
    write_draw(draw, truth.emotion, truth.target, discovery, "discovery")
    write_draw(draw, truth.emotion, truth.target, confirmation, "confirmation")
    with prompts_from(discovery):  # the screens and the sweep select heads on the discovery prompts
        ranks, selection, written = _screens_and_sweep(truth, draw, s, folder)
    with prompts_from(confirmation):  # every claim is evaluated on prompts that did not select it
        name = groundtruth.registered_name(truth.model)
        hand = [
            with_overrides(c, max_tokens=tokens(truth, s))
            for c in hand_claims(truth, name, s.n_prompts, draw.seed, s.random_heads)
        ]
        findings = evaluate([*written, *hand], correction=s.correction)
        findings.to_json(os.path.join(folder, "findings.json"))
    origin = {c.id: "sweep" for c in written} | {c.id: "hand" for c in hand}
    outcomes = [_outcome(r, origin[r.claim.id], truth) for r in findings]
    result = DrawResult(truth.model, draw.index, draw.seed, ranks, selection, outcomes)
    result.seconds = time.perf_counter() - start
    sweep_rank = ",".join(f"{h}#{r}" for h, r in ranks["sweep"].items())
    supported = sum(o.verdict == "supported" for o in result.claims)
    progress(
        f"{truth.model} draw {draw.index + 1}: sweep rank {sweep_rank}, {len(written)} written + {len(hand)} hand "
        f"claims, {supported} supported ({result.seconds:.1f} s)"
    )
    return result


def run_validation(
    truths: list[ModelTruth],
    settings: Settings,
    runs: int,
    base_seed: int,
    workdir: str,
    progress: Callable[[str], None] = print,
) -> dict[str, list[DrawResult]]:
    """``runs`` independent draws on each model (see :func:`run_draw`), by model."""
    out: dict[str, list[DrawResult]] = {}
    for truth in truths:
        draws = make_draws(truth.model, truth.emotion, truth.target, runs, settings.n_prompts, base_seed)
        out[truth.model] = [run_draw(truth, d, settings, workdir, progress) for d in draws]
    return out
