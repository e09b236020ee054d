"""The release record of a validation run: the markdown table of docs/validation.md, and the check
of a new run against recorded figures (power must not fall below, nor the false-positive rate
rise above, the recorded 95% intervals)."""

from __future__ import annotations

import json
from typing import Any

from harness.core.errors import UserError
from harness.report.trust import rate_text
from harness.validation.summary import SCHEMA, SCHEMA_VERSION


def read_record(path: str) -> dict[str, Any]:
    """A validation document written by ``causal-heads validate --output`` (checked, one message)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable validation record ({type(exc).__name__}: {exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: not a {SCHEMA} document, version {SCHEMA_VERSION}")
    if not isinstance(doc.get("models"), dict):
        raise UserError(f"{path}: field 'models' must be an object of per-model figures")
    return doc


def check_against(doc: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """Where ``doc`` is worse than ``record``: a model's power below the recorded power's 95%
    interval, or its false-positive rate above the recorded one's; models absent from either are
    named too."""
    problems = []
    for model, new in doc["models"].items():
        old = record["models"].get(model)
        if old is None:
            problems.append(f"{model}: not in the record")
            continue
        low = old["power_detail"]["ci_low"]
        if new["power"] is not None and low is not None and new["power"] < low:
            problems.append(
                f"{model}: power {new['power']:.3f} below the recorded {old['power']:.3f} (CI low {low:.3f})"
            )
        high = old["false_positive_detail"]["ci_high"]
        fpr = new["false_positive_rate"]
        if fpr is not None and high is not None and fpr > high:
            problems.append(
                f"{model}: false-positive rate {fpr:.3f} above the recorded {old['false_positive_rate']:.3f} "
                f"(CI high {high:.3f})"
            )
    return problems


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def markdown_table(doc: dict[str, Any]) -> str:
    """The per-model table (recall, power, false positives, controls, equivalences, distractors)."""
    s = doc["settings"]
    lines = [
        f"{s['runs']} draws per model, {s['n_prompts']} prompt pairs each, random heads {s['random_heads']}, "
        f"{s['correction']} across each draw's claims; tokens generated per claim: up to {s['max_tokens']}, "
        "cut to what the model's truth decides.",
        "",
        "| model | tokens | recall@3 sweep / attention / attribution | mean rank sweep / attention / attribution | "
        "selected: causal heads (min) / others (max) | power | "
        "false-positive rate | random control passed (true / false claims) | ≈ by construction supported |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, m in doc["models"].items():
        r, k = m["recall_at_3_by_ranking"], m["mean_rank"]
        ctl, sel = m["random_control_pass"], m["selection_frequency"]
        lines.append(
            f"| {model} | {m.get('max_tokens', s['max_tokens'])} | {_pct(r['sweep'])} / {_pct(r['attention_screen'])} / {_pct(r['attribution_screen'])} | "
            f"{k['sweep']:.2f} / {k['attention_screen']:.2f} / {k['attribution_screen']:.2f} | "
            f"{_pct(sel['causal_mean'])} ({_pct(sel['causal_min'])}) / {_pct(sel['other_max'])} | "
            f"{rate_text(m['power_detail'])} | {rate_text(m['false_positive_detail'])} | "
            f"{_pct(ctl['true_claims']['rate'])} / {_pct(ctl['false_claims']['rate'])} | {rate_text(m['equivalence_supported'])} |"
        )
    distractors = [(model, cid, d) for model, m in doc["models"].items() for cid, d in m["distractor"].items()]
    if distractors:
        lines += ["", "| distractor claim | not supported | prompts whose text the patch changed |", "|---|---|---|"]
        for model, cid, d in distractors:
            changed = d["mean_share_text_changed"]
            lines.append(f"| {model}: `{cid}` | {rate_text(d['not_supported'])} | {_pct(changed)} |")
    return "\n".join(lines) + "\n"
