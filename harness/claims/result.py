"""The typed result of one evaluated claim: verdict, p-values, effects, controls and its failure message."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.claims.examples import changes_text
from harness.claims.outcome import Verdict, mde_text
from harness.claims.spec import Claim
from harness.core.results import shown_path


@dataclass
class ClaimResult:
    claim: Claim
    verdict: Verdict = Verdict.ERROR
    p_raw: float = float("nan")
    p_adjusted: float = float("nan")
    p_refute_raw: float = float("nan")  # the test the other way (directional: opposite one-sided; equivalence:
    p_refute_adjusted: float = float("nan")  # non-equivalence), adjusted across the run's claims as its own family
    correction: str = "holm"
    effect: dict | None = None
    equivalence: dict | None = None
    random_control: dict | None = None
    sign: dict | None = None  # sign test and median Δ (directional claims; decides when statistic = sign)
    per_prompt: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)
    one_token: dict | None = None  # next-token keyword log-prob Δ for the same patch (1-token view)
    model: dict | None = None  # provenance of the model the claim ran on (weights hash, source)
    error: str | None = None
    seconds: float = 0.0
    options: str = ""  # run options a rerun needs (--model NAME=PATH, --profile NAME)
    warnings: list = field(default_factory=list)  # {"code", "message"}: why the data may be uninformative
    text_changed: dict | None = None  # prompts whose generation each contrast changed (harness.claims.examples)
    generations: list = field(default_factory=list)  # every prompt's texts, Δ and whether its text changed
    selection: dict | None = None  # exploratory / confirmatory against its discovery (harness.claims.selection)
    prompts: dict | None = None  # the split and the sha256 of each prompt evaluated (target; sources by set)
    ablations: dict | None = None  # per ablation mode: mean Δ, CI, raw p (claims with ``ablations``)
    preregistration: dict | None = None  # registered when, first evaluated when (harness.claims.registry)
    circuit: dict | None = None  # a circuit claim's faithfulness per ablation, per-head tests, random circuits

    @property
    def supported(self) -> bool:
        """True when the statistics support the claim (its verdict is ``supported``)."""
        return self.verdict == Verdict.SUPPORTED

    @property
    def delta(self) -> list[float]:
        """The per-prompt Δ the claim was tested on (patched − baseline, or claim − versus)."""
        return list(self.per_prompt.get("delta", []))

    def explain(self) -> str:
        """Why the verdict is what it is: effect, CIs, p raw/adjusted, controls, warnings, rerun command."""
        return self.message()

    def rerun_command(self) -> str:
        c = self.claim

        where = f" {shown_path(c.file)}" if c.file else ""
        return f"pytest{where} -k '{c.test_id}' --seed {c.seed} --n-prompts {c.n_prompts} --samples {c.samples}" + (
            f" {self.options}" if self.options else ""
        )

    def message(self) -> str:

        c = self.claim
        if self.error:
            return f"{c.id}: error: {self.error}\nrerun: {self.rerun_command()}"
        eff = self.effect
        if eff is None:  # a result built by hand, never evaluated
            return f"{c.id}: not evaluated\nrerun: {self.rerun_command()}"
        e = (self.equivalence if c.direction == "equivalent" else None) or eff
        head = (
            f"{c.id}: {self.verdict} — {c.metric} {c.direction} for "
            + (f"heads {c.heads} " if c.heads else "")
            + f"{c.patch_label} ({c.source or 'no source'} -> {c.target})"
            + (f" vs {self.claim.versus}" if c.versus else "")
        )
        moved = c.direction if c.direction != "equivalent" else "at all"
        lines = [
            head,
            (
                f"  effect {eff['mean']:+.4f} [95% CI {eff['ci_low']:+.4f}, {eff['ci_high']:+.4f}] "
                f"({eff['ci_method']}), Cohen's dz {eff['cohens_dz']:.3f}, "
                f"{100 * eff['frac_in_direction']:.0f}% of prompts moved {moved}"
            ),
        ]
        if c.direction == "equivalent":
            lines.append(f"  TOST margin ±{c.margin}: 90% CI [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]")
        if self.sign:
            st = self.sign
            lines.append(
                f"  sign test{' (decides: statistic = sign)' if c.statistic == 'sign' else ''}: median "
                f"{st['median']:+.4f} [95% CI {st['ci_low']:+.4f}, {st['ci_high']:+.4f}], {st['n_up']} up / "
                f"{st['n_down']} down / {st['n_zero']} unchanged, p {st['p_value']:.4g}"
            )
        if self.circuit:
            lines += circuit_lines(self.circuit)
        if self.ablations:
            each = "; ".join(
                f"{m} {a['mean']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}] p {a['p_raw']:.4g}"
                for m, a in self.ablations.items()
            )
            lines.append(f"  necessary under every ablation? {each} (the claim's p is the largest)")
        lines.append(
            f"  p = {self.p_raw:.4g} raw, {self.p_adjusted:.4g} {self.correction}-adjusted; alpha {c.alpha}; "
            f"n = {eff['n']} prompts × {c.samples} samples; seed {c.seed}; MDE at this n {mde_text(eff)}"
        )
        other_way = "non-equivalence (|Δ| beyond the margin)" if c.direction == "equivalent" else "the other direction"
        lines.append(
            f"  {other_way}: p = {self.p_refute_raw:.4g} raw, {self.p_refute_adjusted:.4g} "
            f"{self.correction}-adjusted (refutes below alpha)"
        )
        if self.random_control:
            rc = self.random_control
            lines.append(
                f"  random heads: claimed effect at percentile {rc['percentile']:.0f} of "
                f"{len(rc['null'])} random heads (empirical p {rc['empirical_p']:.3f}, "
                f"beats all: {rc['beats_all']})"
            )
        if self.text_changed:
            lines.append(f"  generations changed (token for token): {changes_text(self.text_changed)} prompts")
        lines += [f"  warning ({w['code']}): {w['message']}" for w in self.warnings]
        if self.preregistration:
            pre = self.preregistration
            lines.append(
                f"  pre-registered: {'yes' if pre['before_first_evaluation'] else 'no'} (registered "
                f"{pre['registered'] or 'never'}, first evaluated {pre['first_evaluated']}; {pre['registry']})"
            )
        lines.append(f"  rerun: {self.rerun_command()}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "claim": self.claim.to_dict(),
            "test_id": self.claim.test_id,
            "verdict": Verdict(self.verdict).value,
            "p_raw": self.p_raw,
            "p_adjusted": self.p_adjusted,
            "correction": self.correction,
            "p_refute_raw": self.p_refute_raw,
            "p_refute_adjusted": self.p_refute_adjusted,
            "effect": self.effect,
            "equivalence": self.equivalence,
            "random_control": self.random_control,
            "sign": self.sign,
            "model": self.model,
            "per_prompt": self.per_prompt,
            "examples": self.examples,
            "text_changed": self.text_changed,
            "generations": self.generations,
            "one_token": self.one_token,
            "error": self.error,
            "warnings": self.warnings,
            "seconds": self.seconds,
            "rerun": self.rerun_command(),
            **({"selection": self.selection} if self.selection is not None else {}),
            **({"prompts": self.prompts} if self.prompts is not None else {}),
            **({"ablations": self.ablations} if self.ablations is not None else {}),
            **({"preregistration": self.preregistration} if self.preregistration is not None else {}),
            **({"circuit": self.circuit} if self.circuit is not None else {}),
        }


def circuit_lines(rec: dict) -> list[str]:
    """A circuit claim's faithfulness under each ablation (with the per-head drops of a minimality claim)."""
    full = rec["full_effect"]
    lines = [
        f"  full model's effect (source − target) {full['mean']:+.4f} [{full['ci_low']:+.4f}, {full['ci_high']:+.4f}]"
    ]
    for mode, a in rec["ablations"].items():
        lines.append(
            f"  {rec['size']}-head circuit, others {mode}-ablated: faithfulness {a['faithfulness']:.3f} "
            f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}], p {a['p_raw']:.4g} (empty circuit {a['empty_faithfulness']:.3f})"
        )
        for k in a.get("subsets", []):
            lines.append(
                f"    without {k['without']}: circuit {k['circuit_without_effect']:+.4f} vs model "
                f"{k['model_without_effect']:+.4f}, incompleteness {k['score']:.3f}, TOST p {k['p_raw']:.4g}"
            )
        for h in a.get("heads", []):
            lines.append(
                f"    without {h['head']}: faithfulness {h['faithfulness_without']:.3f}, drop {h['drop']:+.4f} "
                f"[{h['ci_low']:+.4f}, {h['ci_high']:+.4f}], Holm p {h['p_holm']:.4g}"
                + ("" if h["necessary"] else "  <- not shown necessary")
            )
    if rec.get("random"):
        shown = ", ".join(f"{r['faithfulness']:.3f}" for r in rec["random"])
        lines.append(f"  random circuits of the same size and layers: faithfulness {shown}")
    return lines


def progress_line(r: ClaimResult) -> str:
    """Effect and raw p of a just-evaluated claim (its verdict waits for the correction across claims)."""
    if r.error:
        return f"error: {r.error.splitlines()[0]}"
    e = r.effect
    if e is None:
        return "not evaluated"
    return (
        f"effect {e['mean']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}], raw p {r.p_raw:.3g}"
        + f", text changed {changes_text(r.text_changed)}"
        + "".join(f"; warning: {w['code']}" for w in r.warnings)
    )
