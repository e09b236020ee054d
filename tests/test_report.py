"""Seed-style markdown report and forest plots, rendered from a real (tiny-model) findings document."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from harness.claims.session import ClaimSession
from harness.claims.spec import Claim
from harness.cli.report import main
from harness.core.results import json_safe, write_result
from harness.report.markdown import render_markdown
from harness.report.text import cell, decisive_text, verdict_tally


@pytest.fixture(scope="module")
def findings(tmp_path_factory):
    base = {"model": "tiny-gpt2", "heads": "1:10", "source": "gratitude", "n_prompts": 6, "max_tokens": 5}
    claims = [Claim(id="grat_up", patch_mode="z", metric="gratitude_keywords", direction="increase",
                    random_heads=2, **base),
              Claim(id="modes_equal", patch_mode="v_only", metric="sentiment", direction="equivalent", margin=0.05,
                    versus=None, **base)]
    from harness.claims.spec import Condition

    claims[1] = Claim(**{**claims[1].__dict__, "versus": Condition("1:10", "pattern_v", "gratitude")})
    session = ClaimSession(claims, n_resamples=2000)
    results = [r.to_dict() for r in session.results().values()]
    results[0]["examples"][0]["patched"] = "<script>alert(1)</script> a | b"
    doc = {"schema": "causal-heads/findings", "schema_version": 1, "created": "2026-11-28T00:00:00+00:00",
           "correction": "holm", "git": {"commit": "abc", "dirty": False},
           "models": {"tiny-gpt2": session.models("tiny-gpt2").provenance()}, "data_files": session.data_files,
           "claims": results}
    path = tmp_path_factory.mktemp("findings") / "findings.json"
    write_result(doc, str(path))
    return path, json.loads(json.dumps(json_safe(doc)))


def test_markdown_has_the_seed_sections_and_the_numbers(findings):
    _, doc = findings
    md = render_markdown(doc, doc["claims"])
    for section in ("## 1. Settings", "## 2. Baseline vs patched", "## 3. Patch-mode comparison",
                    "## 4. Per-head effects", "## 5. Sample generations", "## 6. 1-token vs 30-token",
                    "## 7. Discussion"):
        assert section in md
    grat = next(c for c in doc["claims"] if c["claim"]["id"] == "grat_up")
    row = next(line for line in md.splitlines() if line.startswith("| grat_up | 1:10 | z | gratitude_keywords"))
    assert f"{grat['effect']['mean']:+.4f}" in row and f"**{grat['verdict']}**" in row
    per_head = next(line for line in md.splitlines() if line.startswith("| grat_up |") and "| 2 |" in line)
    assert f"{grat['random_control']['percentile']:.0f}" in per_head
    assert "| modes_equal | 1:10 | v_only vs pattern_v | sentiment |" in md
    eq = next(c for c in doc["claims"] if c["claim"]["id"] == "modes_equal")
    row = next(line for line in md.splitlines() if line.startswith("| modes_equal | 1:10 | v_only | sentiment |"))
    versus_mean = sum(eq["per_prompt"]["versus"]) / len(eq["per_prompt"]["versus"])
    assert f"| {versus_mean:.4f} (mode pattern_v) |" in row  # Δ of a versus claim is patched − versus
    ch = eq["text_changed"]
    assert row.endswith(f"| {ch['patched_vs_versus']}/{ch['n']} vs versus ({ch['patched_vs_baseline']} and "
                        f"{ch['versus_vs_baseline']} vs baseline) |")
    assert "| grat_up |" in md and f"(text changed: {grat['text_changed']['patched_vs_baseline']}/6 prompts)" in md
    assert "| # | why shown | Δ | target prompt | baseline | versus | patched |" in md
    one_token = next(line for line in md.splitlines() if line.startswith("| grat_up |") and "(gratitude)" in line)
    assert f"{grat['one_token']['mean']:+.4f}" in one_token
    assert f"correction: {doc['correction']}." in md and "profile:" not in md
    assert "; correction: holm; profile: greedy." in render_markdown({**doc, "correction": "holm", "profile": "greedy"},
                                                                    doc["claims"])


def test_data_files_the_claims_read_are_recorded_with_their_hashes(findings):
    import hashlib

    from harness.run.prompts import load_keywords, load_prompt_set

    _, doc = findings
    files = doc["data_files"]
    assert sorted(files) == ["keywords:gratitude", "prompts:gratitude", "prompts:neutral"]
    for key, loaded in (("prompts:neutral", load_prompt_set("neutral")), ("keywords:gratitude", load_keywords("gratitude"))):
        with open(loaded.path, "rb") as fh:
            assert files[key]["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    md = render_markdown(doc, doc["claims"])
    assert f"| keywords:gratitude | {files['keywords:gratitude']['path']} | {files['keywords:gratitude']['sha256'][:16]}… |" in md


def test_hostile_generated_text_is_escaped(findings):
    _, doc = findings
    md = render_markdown(doc, doc["claims"])
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt; a \\| b" in md
    assert cell("x|y\nz`") == "x\\|y z&#96;"


def test_cli_writes_markdown_and_plots(findings, tmp_path):
    path, _ = findings
    assert main([str(path), "--markdown", str(tmp_path / "r.md"), "--plots-dir", str(tmp_path / "p")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# Head patching report")
    pngs = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert pngs == ["forest_grat_up.png", "forest_modes_equal.png", "heatmap_tiny-gpt2_gratitude_keywords.png",
                    "heatmap_tiny-gpt2_sentiment.png"]
    assert (tmp_path / "p" / "forest_grat_up.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_discussion_names_claims_where_mean_and_typical_prompt_disagree(findings):
    import copy

    _, doc = findings
    doc = copy.deepcopy(doc)
    grat = next(c for c in doc["claims"] if c["claim"]["id"] == "grat_up")
    assert grat["sign"]["n_up"] + grat["sign"]["n_down"] + grat["sign"]["n_zero"] == 6
    assert "- **mean and typical prompt disagree** (0, raw p at the claim's alpha): none" in render_markdown(doc, doc["claims"])
    grat["effect"]["p_value"], grat["claim"]["statistic"] = 0.4, "sign"
    grat["sign"].update(p_value=0.001, n_up=6, n_down=0, median=0.5, ci_low=0.1, ci_high=0.9)
    md = render_markdown(doc, doc["claims"])
    assert ("- **mean and typical prompt disagree** (1, raw p at the claim's alpha): grat_up: mean test p 0.4, "
            "sign test p 0.001 (6 up / 0 down, median +0.5000; decided by sign)") in md
    assert f"grat_up (sign test: 6 up / 0 down, median +0.5000 [+0.1000, +0.9000], p adj {grat['p_adjusted']:.3g}" in md


def test_verdict_tally_counts_in_a_fixed_order_and_names_errored_claims():
    rs = [{"verdict": "not supported"}, {"verdict": "error", "error": "boom"}, {"verdict": "supported"},
          {"verdict": "not supported"}, {"verdict": "refuted"}]
    assert verdict_tally(rs) == "1 supported, 2 not supported, 1 refuted, 1 error"
    assert verdict_tally([]) == ""


def test_decisive_text_reads_nan_in_memory_and_null_in_json_as_missing():
    sign = {"median": 0.1, "ci_low": 0.08, "ci_high": 0.12}
    assert decisive_text({"claim": {"statistic": "sign"}, "sign": sign}) == ("+0.1000 (median)", "[+0.0800, +0.1200]")
    assert decisive_text({"claim": {}, "effect": {"mean": -0.25, "ci_low": -0.5, "ci_high": 0.0}}) == (
        "-0.2500", "[-0.5000, +0.0000]")
    for missing in (None, float("nan")):
        assert decisive_text({"claim": {}, "effect": {"mean": missing, "ci_low": missing, "ci_high": missing}}) == ("—", "—")
    assert decisive_text({"claim": {}, "effect": None}) == ("—", "—")


def test_a_refuted_claims_fact_gives_the_p_value_that_refuted_it():
    from harness.report.markdown import _fact

    effect = {"mean": -0.3, "ci_low": -0.5, "ci_high": -0.1, "ci_method": "BCa", "mde": 0.2, "n": 30}
    r = {"claim": {"id": "up", "statistic": "mean"}, "effect": effect, "verdict": "refuted", "p_adjusted": 1.0,
         "p_refute_adjusted": 0.0042}
    assert "p adj 1, the other way p adj 0.0042" in _fact(r)
    assert "the other way" not in _fact({**r, "verdict": "not supported"})
    old = {k: v for k, v in r.items() if k != "p_refute_adjusted"}  # a document from before it was recorded
    assert "the other way" not in _fact(old)


def test_updown_and_warning_codes_cells():
    from harness.report.text import updown, warning_codes

    assert updown(None) == "—" and updown({}) == "—"
    assert updown({"n_up": 6, "n_down": 1, "median": 0.5, "p_value": 0.0625}) == "6 / 1, median +0.5000 (p 0.0625)"
    assert warning_codes({}) == "—" and warning_codes({"warnings": []}) == "—" and warning_codes({"warnings": None}) == "—"
    assert warning_codes({"warnings": [{"code": "floor"}, {"code": "untestable"}]}) == "floor, untestable"


def test_settings_and_patch_mode_tables_carry_provenance_and_the_tost_interval(findings):
    _, doc = findings
    md = render_markdown(doc, doc["claims"])
    m = doc["models"]["tiny-gpt2"]
    assert f"| tiny-gpt2 | {m['source']} | {m['weights_sha256'][:16]}… | {m['prompt_format']} |" in md
    eq = next(c for c in doc["claims"] if c["claim"]["id"] == "modes_equal")
    q = eq["equivalence"]
    row = next(line for line in md.splitlines() if line.startswith("| modes_equal | 1:10 | v_only vs pattern_v |"))
    assert f"| [{q['ci_low']:+.4f}, {q['ci_high']:+.4f}] | 0.0500 | {eq['p_adjusted']:.4g} | **{eq['verdict']}** |" in row


def test_disagreement_is_decided_strictly_below_alpha_and_errors_are_listed(findings):
    import copy

    _, doc = findings
    doc = copy.deepcopy(doc)
    grat = next(c for c in doc["claims"] if c["claim"]["id"] == "grat_up")
    alpha = grat["claim"]["alpha"]
    grat["effect"]["p_value"] = 0.5
    grat["sign"]["p_value"] = alpha  # at alpha is not significant: both tests agree (neither rejects)
    assert "- **mean and typical prompt disagree** (0, raw p at the claim's alpha): none" in render_markdown(
        doc, doc["claims"])
    grat["effect"]["p_value"], grat["sign"]["p_value"] = alpha, 0.5
    assert "- **mean and typical prompt disagree** (0, " in render_markdown(doc, doc["claims"])
    grat["effect"]["p_value"] = alpha / 2
    assert "- **mean and typical prompt disagree** (1, " in render_markdown(doc, doc["claims"])
    assert "- **errors** (0): none" in render_markdown(doc, doc["claims"])
    broken = {"claim": {**grat["claim"], "id": "broke"}, "verdict": "error", "error": "model exploded | badly"}
    md = render_markdown(doc, [*doc["claims"], broken])
    assert "- **errors** (1): broke: model exploded \\| badly" in md


def test_cli_counts_the_plots_it_wrote(findings, tmp_path, capsys):
    path, _ = findings
    assert main([str(path), "--markdown", str(tmp_path / "r.md"), "--plots-dir", str(tmp_path / "p")]) == 0
    assert f"wrote {tmp_path / 'r.md'} and 4 plots in {tmp_path / 'p'}" in capsys.readouterr().out


def test_heatmaps_get_the_models_layers_and_heads(findings, tmp_path, monkeypatch):
    from harness.report import markdown as plots  # write_report draws through the name it imported

    calls = []
    monkeypatch.setattr(plots, "head_heatmap", lambda group, n_layers, n_heads, title, path, pending=None: calls.append(
        (n_layers, n_heads, title, path.rsplit("/", 1)[-1])))
    path, _ = findings
    assert main([str(path), "--markdown", str(tmp_path / "r.md"), "--plots-dir", str(tmp_path / "p")]) == 0
    assert sorted(calls) == [(2, 12, "tiny-gpt2: Δ gratitude_keywords per head", "heatmap_tiny-gpt2_gratitude_keywords.png"),
                             (2, 12, "tiny-gpt2: Δ sentiment per head", "heatmap_tiny-gpt2_sentiment.png")]


def test_the_report_is_all_or_nothing_when_a_plot_cannot_be_written(findings, tmp_path, monkeypatch):
    """Reliability round 2, class 5: a full disk left the markdown without its plots. The markdown
    and every plot go in place together; a failure leaves neither, and no temporary."""
    import errno

    from harness.core.errors import UserError
    from harness.report import markdown as plots

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "head_heatmap", full_disk)
    path, _ = findings
    with pytest.raises((OSError, UserError)):
        main([str(path), "--markdown", str(tmp_path / "r.md"), "--plots-dir", str(tmp_path / "p")])
    assert not (tmp_path / "r.md").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "findings.json"] == []


@pytest.mark.parametrize("metric", ["../../escaped", "/tmp/abs", "..", "a/../../b"])
def test_file_names_from_a_crafted_document_stay_in_the_plots_folder(findings, tmp_path, metric):
    """Class 1 of the reliability issue: a metric (or model, or claim id) naming a path outside
    --plots-dir once wrote a PNG there; every document-derived name is now a plain file name."""
    path, doc = findings
    crafted = json.loads(json.dumps(doc))
    for c in crafted["claims"]:
        c["claim"]["metric"] = metric
        c["claim"]["id"] = "../" + c["claim"]["id"]
    bad = tmp_path / "in" / "findings.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(crafted))
    plots = tmp_path / "in" / "plots"
    assert main([str(bad), "--markdown", str(tmp_path / "in" / "r.md"), "--plots-dir", str(plots)]) == 0
    outside = [p for p in tmp_path.rglob("*.png") if plots not in p.parents]
    assert outside == [] and len(list(plots.glob("*.png"))) >= 3


# ------------------------------------------------- hostile documents (reliability, class 7)
def _paths(node, prefix=()):
    """Every place in a JSON document: the paths a mutation may replace or delete."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _hostile_values():
    from hypothesis import strategies as st

    leaves = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
              | st.sampled_from(["../../escape", "/tmp/abs", "..", "", "a/b\\c", "\x1b[31mred", "$\\frac{", "1:1", "\ud800"]))
    return st.recursive(leaves, lambda kids: st.lists(kids, max_size=3)
                        | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=6)


def _mutated(doc, draw):
    from hypothesis import strategies as st

    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        *parent_path, key = draw(st.sampled_from(paths))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(_hostile_values())
    return doc


def _files(root):
    return {p for p in root.rglob("*")}


def _hostile_runs(findings, root, main_in_process, *, examples: int, malformed: bool) -> dict[int, int]:
    """Mutated documents to regress (against the real document, either side) and to report:
    never a traceback (an unexpected exception fails the test, see ``main_in_process``), exit 2
    exactly when the validator refuses the document (one line on stderr), and no file outside the
    output folder. ``malformed``: only documents the report's validator refuses (fast: nothing to
    draw), else only those it accepts (hostile values in valid places, rendered and plotted).
    Returns how many documents the report answered with each exit code."""
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    from harness.core.errors import UserError
    from harness.findings.schema import load_document

    good_path, good = findings
    codes: dict[int, int] = {}

    def valid(path, complete):
        try:
            load_document(str(path), complete=complete)
            return True
        except UserError:
            return False

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        doc = _mutated(good, data.draw)
        work = root / "work"
        shutil.rmtree(work, ignore_errors=True)
        (work / "out").mkdir(parents=True)
        bad = work / "bad.json"
        bad.write_text(json.dumps(doc))  # NaN and Infinity as JSON's non-standard literals, "\ud800" escaped
        for_report = valid(bad, True)
        assume(for_report != malformed)
        before = _files(root)
        old, new = (str(good_path), str(bad)) if data.draw(st.booleans()) else (str(bad), str(good_path))
        proc = main_in_process("harness.cli.regress", old, new)
        assert proc.returncode in ((0, 1) if valid(bad, False) else (2,)), proc.stderr
        proc = main_in_process("harness.cli.report", str(bad), "--markdown", str(work / "out" / "r.md"),
                               "--plots-dir", str(work / "out" / "plots"))
        assert proc.returncode == (0 if for_report else 2), proc.stderr
        if proc.returncode == 2:
            assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
        written = _files(root) - before
        assert all(work / "out" in p.parents for p in written), sorted(map(str, written))
        codes[proc.returncode] = codes.get(proc.returncode, 0) + 1

    run()
    return codes


def test_a_thousand_malformed_documents_give_exit_2_and_write_nothing(findings, tmp_path_factory, main_in_process):
    """Random field types, missing fields, non-finite numbers, lone surrogates, traversal names:
    the reliability issue's class 7 (readers crashed with tracebacks on such documents)."""
    codes = _hostile_runs(findings, tmp_path_factory.mktemp("malformed"), main_in_process, examples=1000,
                          malformed=True)
    assert list(codes) == [2] and codes[2] >= 1000  # every one refused, one line each (checked per document)


@pytest.mark.slow  # ~0.5 s of matplotlib per document; the 1,000 malformed ones above run per commit
def test_hostile_values_in_valid_documents_are_rendered_and_plotted(findings, tmp_path_factory, main_in_process):
    """Documents the validator accepts but that hold hostile values where any value of the type
    is allowed (a ``$`` formula in a plot label, null statistics, a mean outside its CI, a head
    that is not in the model): the report and its plots are written, inside the output folder."""
    codes = _hostile_runs(findings, tmp_path_factory.mktemp("valid"), main_in_process, examples=20, malformed=False)
    assert list(codes) == [0] and codes[0] >= 20  # every one rendered (its files inside the output folder)


def test_an_equivalence_claims_plot_and_summary_show_the_interval_that_decides_it():
    """Issue 40: the headline and the forest plot showed the 95% CI while TOST's 90% interval
    decided the verdict; a user saw a CI past the margin under a green "supported"."""
    from harness.report.plots import forest_figure
    from harness.report.text import decisive_text

    r = {"claim": {"id": "eq", "heads": "1:3", "metric": "sentiment", "direction": "equivalent", "margin": 0.05,
                   "alpha": 0.05},
         "effect": {"mean": 0.01, "ci_low": -0.06, "ci_high": 0.07},
         "equivalence": {"mean": 0.01, "margin": 0.05, "p_value": 0.01, "ci_low": -0.03, "ci_high": 0.045,
                         "confidence": 0.9, "n": 20}}  # fmt: skip
    fig = forest_figure(r)
    ax = fig.axes[0]
    drawn = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
    assert drawn["90% TOST interval (decides)"] == [-0.03, 0.045]
    assert drawn["95% CI"] == [-0.06, 0.07]
    assert decisive_text(r) == ("+0.0100", "[-0.0300, +0.0450] 90% TOST, margin ±0.05")
    directional = {**r, "claim": {**r["claim"], "direction": "increase"}}
    directional.pop("equivalence")
    assert "TOST interval (decides)" not in {line.get_label() for line in forest_figure(directional).axes[0].get_lines()}
    assert decisive_text(directional) == ("+0.0100", "[-0.0600, +0.0700]")
