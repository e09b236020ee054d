"""Render the seed-style markdown report and plots from a findings document (never from HTML).

    python -m harness.report reports/findings.json --markdown reports/phase7_head_patching_report.md

Sections follow ``../shared/seed/phase7_head_patching.md``: 1 settings, 2 baseline vs
patched (Δ with 95% CI and verdict), 3 patch-mode comparison (equivalence tests), 4 per-head
effects (random-head percentile), 5 sample generations, 6 1-token vs 30-token, 7 discussion
facts. A forest plot per claim and a layer × head heatmap per (model, metric) of the
single-head claims' effects go to ``--plots-dir`` (default ``results/baseline/plots/heads``). Text from generations is escaped for markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from harness.claims.examples import changes_text
from harness.claims.label import patch_label
from harness.claims.outcome import mde_text
from harness.core.outputs import PendingFiles
from harness.core.results import path_in
from harness.findings.schema import claims_by_id, load_document
from harness.model import groundtruth
from harness.report.circuit_block import circuit_markdown
from harness.report.discovery import discovery_markdown
from harness.report.plots import forest_png, head_heatmap
from harness.report.text import cell, ci_text, mean_or_none, num_text, updown
from harness.report.trust import trust_markdown


def render_markdown(doc: dict, claims: list[dict]) -> str:
    ok = [c for c in claims if not c.get("error")]
    out = [
        "# Head patching report",
        "",
        (
            f"Rendered from findings of {doc.get('created', '?')}, git {str((doc.get('git') or {}).get('commit'))[:12]}"
            f"{' (dirty)' if (doc.get('git') or {}).get('dirty') else ''}; correction: {doc.get('correction')}"
            f"{'; profile: ' + cell(doc['profile']) if doc.get('profile') else ''}."
        ),
        "",
    ]
    if doc.get("not_selected"):
        left = doc["not_selected"]
        out += [
            f"**Subset of the claims**: this run evaluated {len(claims)} of its family's {len(claims) + len(left)} "
            f"claims ({cell(', '.join(left))} not selected); each adjusted p is Bonferroni over the whole family.",
            "",
        ]
    if doc.get("complete") is False and doc.get("not_run"):
        not_run = doc.get("not_run") or []
        out += [
            f"**Incomplete run**: it was cut short; {len(not_run)} selected claim(s) were not run"
            + (f" ({cell(', '.join(not_run))})" if not_run else "")
            + ".",
            "",
        ]
    out += _settings(doc, claims)
    out += _deltas(ok)
    out += _mode_comparisons(ok)
    out += _per_head(ok)
    out += _samples(ok)
    out += _one_token(ok)
    out += _discussion(ok, claims)
    out += ["", *discovery_markdown(claims)] if discovery_markdown(claims) else []
    out += ["", *circuit_markdown(claims)] if circuit_markdown(claims) else []
    return "\n".join(out) + "\n"


def _settings(doc: dict, claims: list[dict]) -> list[str]:
    out: list[str] = []
    out += ["## 1. Settings", "", "| model | source | weights sha256 | format |", "|---|---|---|---|"]
    for name, m in (doc.get("models") or {}).items():
        out.append(
            f"| {cell(name)} | {cell(m.get('source'))} | {cell(str(m.get('weights_sha256'))[:16])}… | "
            f"{cell(m.get('prompt_format'))} |"
        )
    if doc.get("data_files"):
        out += ["", "| data file | path | sha256 |", "|---|---|---|"]
        out += [
            f"| {cell(k)} | {cell(f.get('path'))} | {cell(str(f.get('sha256'))[:16])}… |"
            for k, f in doc["data_files"].items()
        ]
    out += [
        "",
        "| claim | heads | mode | source → target | n prompts × samples | max tokens | alignment | sampling | seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in claims:
        c = r["claim"]
        samp = f"T={c['temperature']}, top-k {c['top_k']}, top-p {c['top_p']}" if c["do_sample"] else "greedy"
        out.append(
            f"| {cell(c['id'])} | {cell(c['heads'])} | {cell(patch_label(c))} | {cell(c['source'])} → "
            f"{cell(c['target'])} | {c['n_prompts']} × {c['samples']} | {c['max_tokens']} | {cell(c['alignment'])} "
            f"| {cell(samp)} | {c['seed']} |"
        )
    return out


def _deltas(ok: list[dict]) -> list[str]:
    out: list[str] = []
    out += [
        "",
        "## 2. Baseline vs patched (Δ)",
        "",
        (
            "Δ is patched − baseline, or for a claim with a versus condition patched − versus (its mean in "
            "the versus column). Text changed: prompts whose generation the contrast changed, token for token."
        ),
        "",
        (
            "| claim | heads | mode | metric | baseline | patched | versus | Δ | 95% CI | p raw / adj | verdict "
            "| up / down (sign p) | text changed |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ok:
        c, e, pp = r["claim"], r["effect"], r["per_prompt"]
        versus = (
            f"{num_text(mean_or_none(pp.get('versus')), '.4f')} ({_condition(c['versus'], c)})"
            if c.get("versus")
            else "—"
        )
        out.append(
            f"| {cell(c['id'])} | {cell(c['heads'])} | {cell(patch_label(c))} | {cell(c['metric'])} | "
            f"{num_text(mean_or_none(pp.get('baseline')), '.4f')} | {num_text(mean_or_none(pp.get('patched')), '.4f')} | {versus} | "
            f"{num_text(e['mean'])} | {ci_text(e)} | {num_text(r['p_raw'], '.4g')} / {num_text(r['p_adjusted'], '.4g')} | **{cell(r['verdict'])}** | "
            f"{updown(r.get('sign'))}{' **decides**' if c.get('statistic') == 'sign' else ''} | "
            f"{cell(changes_text(r.get('text_changed')))} |"
        )
    return out


def _mode_comparisons(ok: list[dict]) -> list[str]:
    out: list[str] = []
    out += ["", "## 3. Patch-mode comparison", ""]
    modes = [
        r for r in ok if r["claim"].get("versus") and r["claim"]["versus"]["patch_mode"] != r["claim"]["patch_mode"]
    ]
    if modes:
        out += [
            "| claim | heads | modes | metric | mean difference | 90% CI (TOST) | margin | p adj | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in modes:
            c, q = r["claim"], r.get("equivalence") or {}
            out.append(
                f"| {cell(c['id'])} | {cell(c['heads'])} | {cell(c['patch_mode'])} vs "
                f"{cell(c['versus']['patch_mode'])} | {cell(c['metric'])} | {num_text(r['effect']['mean'])} | "
                f"{ci_text(q)} | {num_text(c.get('margin'), '.4f')} | {num_text(r['p_adjusted'], '.4g')} | **{cell(r['verdict'])}** |"
            )
    else:
        out.append("No patch-mode comparison claims in this run.")
    return out


def _per_head(ok: list[dict]) -> list[str]:
    out: list[str] = []
    out += ["", "## 4. Per-head effects", ""]
    heads = [r for r in ok if r.get("random_control")]
    if heads:
        out += [
            "| claim | heads | metric | Δ | random heads (K) | percentile | empirical p | beats all |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in heads:
            c, rc = r["claim"], r["random_control"]
            out.append(
                f"| {cell(c['id'])} | {cell(c['heads'])} | {cell(c['metric'])} | {num_text(r['effect']['mean'])} | "
                f"{len(rc['null'])} | {num_text(rc['percentile'], '.0f')} | {num_text(rc['empirical_p'], '.3f')} | {rc['beats_all']} |"
            )
    else:
        out.append("No claims with a random-head control in this run.")
    return out


def _samples(ok: list[dict]) -> list[str]:
    out: list[str] = []
    out += [
        "",
        "## 5. Sample generations",
        "",
        (
            "Per claim, the prompts whose metric moved most the claimed way, the one that moved most the "
            "other way, then prompts whose text changed while the metric did not (first sample). Every "
            "prompt's generations are in the findings document and the HTML report."
        ),
        "",
    ]
    for r in ok:
        out += _examples_md(r)
    return out


def _one_token(ok: list[dict]) -> list[str]:
    out: list[str] = []
    out += [
        "## 6. 1-token vs 30-token",
        "",
        "| claim | 1-token Δ log-prob (keywords of) | 95% CI | generation Δ (metric) | 95% CI | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in ok:
        t, c = r.get("one_token"), r["claim"]
        one = f"{num_text(t['mean'])} ({cell(t['emotion'])})" if t else "—"
        out.append(
            f"| {cell(c['id'])} | {one} | {ci_text(t)} | {num_text(r['effect']['mean'])} ({cell(c['metric'])}, "
            f"{c['max_tokens']} tokens) | {ci_text(r['effect'])} | {cell(r['verdict'])} |"
        )
    return out


def _discussion(ok: list[dict], claims: list[dict]) -> list[str]:
    out: list[str] = []
    out += ["", "## 7. Discussion (facts from this run)", ""]
    for verdict in ("supported", "not supported", "refuted"):
        rows = [r for r in ok if r["verdict"] == verdict]
        out.append(f"- **{verdict}** ({len(rows)}): " + ("; ".join(_fact(r) for r in rows) or "none"))
    split = [
        r
        for r in ok
        if r.get("sign")
        and None not in (r["effect"].get("p_value"), r["sign"]["p_value"], r["claim"]["alpha"])
        and (r["sign"]["p_value"] < r["claim"]["alpha"]) != (r["effect"]["p_value"] < r["claim"]["alpha"])
    ]
    out.append(
        f"- **mean and typical prompt disagree** ({len(split)}, raw p at the claim's alpha): "
        + (
            "; ".join(
                f"{cell(r['claim']['id'])}: mean test p {r['effect']['p_value']:.3g}, sign test p {r['sign']['p_value']:.3g} "
                f"({num_text(r['sign']['n_up'], '.0f')} up / {num_text(r['sign']['n_down'], '.0f')} down, "
                f"median {num_text(r['sign']['median'])}; "
                f"decided by {r['claim'].get('statistic', 'mean')})"
                for r in split
            )
            or "none"
        )
    )
    warned = [r for r in ok if r.get("warnings")]
    out.append(
        f'- **uninformative data** ({len(warned)}; verdicts unchanged, read "not supported" as untested): '
        + (
            "; ".join(
                f"{cell(r['claim']['id'])}: "
                + " ".join(f"{cell(w['code'])}: {cell(w['message'])}." for w in r["warnings"])
                for r in warned
            )
            or "none"
        )
    )
    errors = [r for r in claims if r.get("error")]
    out.append(
        f"- **errors** ({len(errors)}): "
        + ("; ".join(f"{cell(r['claim']['id'])}: {cell(r['error'])}" for r in errors) or "none")
    )
    return out


def _condition(v: dict, c: dict) -> str:
    """What a versus condition changes relative to the claim, e.g. ``pattern_v`` or ``source anger``."""
    diff = [
        f"{k.replace('patch_mode', 'mode')} {v[k]}"
        for k in ("heads", "patch_mode", "source", "receivers")
        if k in v and v.get(k) != c.get(k)
    ]
    return cell(", ".join(diff) or "same")


def _examples_md(r: dict) -> list[str]:
    c = r["claim"]
    versus = bool(c.get("versus"))
    changed = f" (text changed: {cell(changes_text(r['text_changed']))} prompts)" if r.get("text_changed") else ""
    out = [
        f"**{cell(c['id'])}**{changed}",
        "",
        "| # | why shown | Δ | target prompt | baseline | " + ("versus | " if versus else "") + "patched |",
        "|---|---|---|---|---|" + ("---|" if versus else "") + "---|",
    ]
    for x in r.get("examples", []):
        out.append(
            f"| {x.get('index', '—')} | {cell(x.get('why', '—'))} | {num_text(x.get('delta'))} | {cell(x['target'])} | "
            f"{cell(x['baseline'])} | "
            + (f"{cell(x.get('versus', '—'))} | " if versus else "")
            + f"{cell(x['patched'])} |"
        )
    return out + [""]


def _fact(r: dict) -> str:
    c, e, st = r["claim"], r["effect"], r.get("sign")
    # a refuted claim is decided by the test the other way (documents from before it was recorded lack it)
    refute = (
        f", the other way p adj {num_text(r['p_refute_adjusted'], '.3g')}"
        if r.get("verdict") == "refuted" and r.get("p_refute_adjusted") is not None
        else ""
    )
    if c.get("statistic") == "sign" and st:
        return (
            f"{cell(c['id'])} (sign test: {num_text(st['n_up'], '.0f')} up / {num_text(st['n_down'], '.0f')} down, "
            f"median {num_text(st['median'])} {ci_text(st)}, p adj {num_text(r['p_adjusted'], '.3g')}{refute}; "
            f"mean Δ {num_text(e['mean'])} {ci_text(e)})"
        )
    return (
        f"{cell(c['id'])} (Δ {num_text(e['mean'])} {ci_text(e)}, p adj {num_text(r['p_adjusted'], '.3g')}{refute}, "
        f"MDE {mde_text(e)})"
    )


def _by_model_metric(claims: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in claims:
        groups.setdefault((r["claim"]["model"], r["claim"]["metric"]), []).append(r)
    return groups


def _bytes_writer(data: bytes) -> Callable[[BinaryIO], object]:
    return lambda fh: fh.write(data)


def write_report(findings: str, markdown: str, plots_dir: str) -> int:
    """Render the findings document at ``findings`` to ``markdown`` and its plots (a forest plot per
    claim with an effect, a per-head heatmap per model and metric) into ``plots_dir``; returns
    how many plots were written."""
    doc = load_document(findings, complete=True)
    claims = list(claims_by_id(doc).values())
    # the release's ground-truth figures close the report (not from the findings: the installed record)
    trust = trust_markdown(groundtruth.shipped_record())
    text = render_markdown(doc, claims) + ("\n" + "\n".join(trust) if trust else "")
    written = 0
    with PendingFiles() as pending:  # the markdown and every plot in place together, or none (a full disk)
        pending.write_bytes(markdown, text.encode())
        for r in claims:
            if r.get("effect") and None not in (r["effect"].get(k) for k in ("mean", "ci_low", "ci_high")):
                png = forest_png(r)
                pending.write(path_in(plots_dir, "forest", r["claim"]["id"], suffix=".png"), _bytes_writer(png))
                written += 1
        for (model, metric), group in _by_model_metric(claims).items():
            shape = (doc.get("models") or {}).get(model, {}).get("shape_tuple")
            if shape:
                head_heatmap(
                    group,
                    shape[0],
                    shape[1],
                    f"{model}: Δ {metric} per head",
                    path_in(plots_dir, "heatmap", model, metric, suffix=".png"),  # names from the document
                    pending=pending,
                )
                written += 1
        pending.commit()
    return written
