"""Path patching: receivers = every later head + direct reproduces the plain patch; direct alone freezes the rest."""

from __future__ import annotations

import json

import pytest

from conftest import load_tiny, tiny_params
from harness.core.errors import UserError
from harness.patch.hooks import PatchConfig, patch_hooks
from harness.patch.path import Receivers, parse_receivers, path_hooks
from harness.patch.source import capture_source
from harness.run.generation import GenerationConfig, generate
from harness.run.prompts import load_emotion_prompts, load_prompt_set

TRACK = {"some": [3, 5, 7, 11]}


def _runs(handle, receivers: str, *, mode="z", heads=((0, 1),), samples=1, tokens=6):
    targets, sources = load_prompt_set("neutral").head(5), load_emotion_prompts("gratitude").head(5)
    patch = PatchConfig(tuple(heads), mode, "end")
    src = capture_source(handle, sources, sorted({l for l, _ in heads}), get_needs(mode))
    cfg = GenerationConfig(max_tokens=tokens, do_sample=samples > 1, samples=samples, seed=3)
    rec = parse_receivers(receivers, heads, handle.shape.n_layers, handle.shape.n_heads)
    path = generate(handle, targets, cfg, hooks=path_hooks(handle, patch, src, rec), track=TRACK)
    plain = generate(handle, targets, cfg, hooks=patch_hooks(handle, patch, src), track=TRACK)
    base = generate(handle, targets, cfg, track=TRACK)
    return path, plain, base


def get_needs(mode):
    from harness.patch.modes import MODES

    return MODES[mode].needs


def _tracked(result):
    return [v for g in result.generations for v in g.tracked["some"]]


@pytest.mark.parametrize("name", tiny_params())
def test_every_later_head_and_the_direct_path_reproduce_the_plain_patch(name):
    handle = load_tiny(name)
    path, plain, base = _runs(handle, "later,direct")
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]
    assert _tracked(path) == pytest.approx(_tracked(plain), abs=1e-4)
    assert _tracked(plain) != pytest.approx(_tracked(base), abs=1e-4)  # the patch does something here


def test_sampled_path_runs_keep_each_rows_random_stream():
    handle = load_tiny("tiny-llama-gqa")
    path, plain, _ = _runs(handle, "later,direct", samples=3, heads=((0, 1), (1, 2)), mode="pattern_v")
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]


def test_direct_only_freezes_every_later_head_and_later_only_drops_the_direct_path():
    """Senders in the last layer: no later head exists, so 'direct' is the whole patch; a sender
    one layer below with receivers = the last layer's heads only equals 'later' (nothing else is later)."""
    handle = load_tiny("tiny-qwen2")
    last = handle.shape.n_layers - 1
    path, plain, _ = _runs(handle, "direct", heads=((last, 0),))
    assert [g.token_ids for g in path.generations] == [g.token_ids for g in plain.generations]
    a, _, base = _runs(handle, "later", heads=((last - 1, 1),))
    b, _, _ = _runs(handle, f"{last}:*", heads=((last - 1, 1),))
    assert _tracked(a) == _tracked(b) and _tracked(a) != pytest.approx(_tracked(base), abs=1e-4)


def test_senders_in_the_last_layer_have_no_later_heads_to_receive():
    handle = load_tiny("tiny-gpt2")
    last = handle.shape.n_layers - 1
    with pytest.raises(UserError, match="no receiver left"):
        parse_receivers("later", ((last, 0),), handle.shape.n_layers, handle.shape.n_heads)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "name later heads"),
        ("0:1", "not above the lowest sender layer 0"),
        ("1:2, direct", None),
        ("2:0", "is also a sender"),
        ("9:0", "9"),
    ],
)
def test_receivers_are_checked_against_the_senders(text, message):
    senders = ((0, 1), (2, 0))
    if message is None:
        assert parse_receivers(text, senders, 3, 4) == Receivers(((1, 2),), True)
        return
    with pytest.raises(UserError, match=message):
        parse_receivers(text, senders, 3, 4)


def test_later_names_every_head_above_the_lowest_sender_but_the_senders():
    rec = parse_receivers("later,direct", ((0, 1), (1, 0)), 3, 2)
    assert rec.heads == ((1, 1), (2, 0), (2, 1)) and rec.direct and rec.to_text() == "1:1,2:0,2:1,direct"


def test_modes_that_read_the_target_are_refused():
    handle = load_tiny("tiny-gpt2")
    src = capture_source(handle, ["thanks"], [0], get_needs("v_only"))
    with pytest.raises(UserError, match="z-valued modes"):
        path_hooks(handle, PatchConfig(((0, 1),), "v_only"), src, Receivers(((1, 0),), True))


def test_the_fan_out_hooks_are_removed_after_the_run():
    handle = load_tiny("tiny-gpt2")
    blocks = handle.hooked.decoder_layers()
    before = [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks]
    _runs(handle, "direct", tokens=2)
    assert [(len(b._forward_pre_hooks), len(b._forward_hooks)) for b in blocks] == before


# ---------------------------------------------------------------- claims of kind "path"

PATH = {
    "model": "tiny-gpt2",
    "kind": "path",
    "senders": "0:10",
    "receivers": "later,direct",
    "patch_mode": "z",
    "source": "gratitude",
    "metric": "gratitude_logprob",
    "direction": "increase",
    "n_prompts": 6,
    "max_tokens": 3,
}


def test_a_path_claim_through_every_route_equals_the_plain_patch_claim_and_gets_random_senders(tiny_gpt2):
    from harness.claims.session import ClaimSession
    from harness.claims.spec import Claim

    plain = {k: v for k, v in PATH.items() if k not in ("kind", "senders", "receivers")}
    claims = [
        Claim(id="path_all", random_heads=2, **PATH),
        Claim(id="plain", heads="0:10", **plain),
        Claim(id="direct_vs_later", **{**PATH, "receivers": "direct"}, versus={"receivers": "later"}, random_heads=2),
    ]
    session = ClaimSession(claims, n_resamples=500)
    session.models.add("tiny-gpt2", tiny_gpt2)
    res = session.results()
    assert all(r.error is None for r in res.values()), [r.error for r in res.values()]
    assert res["path_all"].per_prompt["patched"] == pytest.approx(res["plain"].per_prompt["patched"], abs=1e-5)
    assert len(res["path_all"].random_control["null"]) == 2 and len(res["direct_vs_later"].random_control["null"]) == 2
    record = res["direct_vs_later"].to_dict()["claim"]
    assert record["kind"] == "path" and record["senders"] == record["heads"] == "0:10"
    assert record["receivers"] == "direct" and record["versus"]["receivers"] == "later"
    assert "kind" not in res["plain"].to_dict()["claim"]  # a patch claim's record is as before
    assert res["path_all"].claim.test_id == "path_all-head_0_10"
    # the findings document holding path and patch claims passes the reports' complete check,
    # and the markdown report names the receivers
    from harness.findings.document import findings_document
    from harness.findings.schema import check_findings
    from harness.report.markdown import render_markdown

    doc = findings_document([r.to_dict() for r in res.values()], correction="holm")
    check_findings(json.loads(json.dumps(doc)), "f.json", complete=True)
    text = render_markdown(doc, doc["claims"])
    assert "path z → direct" in text and "receivers later" in text
    plan = session.plan()
    keys = [a.key.kind for g in plan.groups for a in g.arms]
    assert keys.count("path") == 3 + 2 + 2 * 2  # path_all + its 2 random senders; direct, later, 2 × 2 random
    # path runs share the layers below their senders with the baseline (batches of their own)
    assert {a.layers for g in plan.groups for a in g.arms if a.key.kind == "path"} == {(0,)}  # senders in layer 0
    single = ClaimSession([Claim(id="p", **{**PATH, "senders": "1:3", "receivers": "direct"})], n_resamples=500)
    single.models.add("tiny-gpt2", tiny_gpt2)
    single.run_plan(single.plan())
    assert [s["layer"] for s in single.sharing_by_group[0]] == [1]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "patch"}, 'set kind = "path"'),
        ({"receivers": ""}, "receivers"),
        ({"receivers": "later,,direct"}, "comma-separated mix"),
        ({"receivers": "1:x"}, "malformed head"),
        ({"patch_mode": "v_only"}, "z-valued modes"),
        ({"heads": "0:1"}, "give senders only"),
        ({"kind": "tunnel"}, "must be one of patch, path"),
        ({"intervention": "double"}, None),
    ],
)
def test_path_claims_are_checked_when_built(change, message):
    from harness.claims.spec import Claim

    row = {**PATH, **change}
    if "heads" in change and "senders" in row:
        row["heads"] = change["heads"]
    with pytest.raises(UserError) as err:
        Claim(id="p", **row)
    if message:
        assert message in str(err.value) and "claim 'p'" in str(err.value)


def test_versus_receivers_need_a_path_claim():
    from harness.claims.spec import Claim

    plain = {k: v for k, v in PATH.items() if k not in ("kind", "senders", "receivers")}
    with pytest.raises(UserError, match="is for a path claim"):
        Claim(id="p", heads="0:10", versus={"receivers": "direct"}, **plain)


def test_a_path_claim_row_round_trips_through_toml(tmp_path):
    from harness.claims.spec import Claim, claims_toml, load_claims

    claim = Claim(id="p", **{**PATH, "receivers": "direct"}, versus={"receivers": "later"})
    path = tmp_path / "c.toml"
    path.write_text(claims_toml([claim.to_dict()]))
    assert load_claims(str(path)) == [claim]


@pytest.mark.parametrize("name", ["tiny-llama-gqa", "tiny-gpt2", "tiny-gemma2"])
def test_planned_path_arms_share_lower_layers_and_equal_their_own_runs(name):
    """A path arm in a planned group replays the baseline's layers below its senders (rows that
    diverge compute them in the side batch) and gives exactly the tokens and log-probs of its own run."""
    from harness.run.shared import Arm, _packs, generate_arms

    handle = load_tiny(name)
    last = handle.shape.n_layers - 1
    targets, sources = load_prompt_set("neutral").head(12), load_emotion_prompts("gratitude").head(12)
    cfg = GenerationConfig(max_tokens=8)  # greedy: a random tiny model's near-uniform sampling hides patches
    hooks = []  # the tiny models have 2 layers: senders in the last one share layer 0, receivers 'direct'
    for heads, mode in ((tuple((last, h) for h in range(handle.shape.n_heads)), "zero"), (((last, 1),), "z")):
        patch = PatchConfig(heads, mode, "end")
        src = capture_source(handle, sources, [last], get_needs(mode))
        rec = parse_receivers("direct", patch.heads, handle.shape.n_layers, handle.shape.n_heads)
        hooks.append(path_hooks(handle, patch, src, rec))
    arms = [Arm(h, last) for h in hooks]
    plain = Arm(patch_hooks(handle, PatchConfig(((last, 1),), "z", "end"), src), last)
    # path runs with the same sender layer and streams share a batch; never with a plain patch
    assert _packs(handle, targets, cfg, [*arms, plain], 512) == [[0, 1], [2]]
    base, results, shares = generate_arms(handle, targets, cfg, arms, track=TRACK)
    for h, planned, share in zip(hooks, results, shares, strict=True):
        alone = generate(handle, targets, cfg, hooks=h, track=TRACK)
        assert [g.token_ids for g in planned.generations] == [g.token_ids for g in alone.generations]
        # as for any planned arm (tests/test_shared.py): the side batch's rounding, relative gap < 1e-5
        gap = max(abs(x - y) / max(1.0, abs(x)) for x, y in zip(_tracked(planned), _tracked(alone), strict=True))
        assert gap < 1e-5 and share.layer == last
    assert any(d is not None for s in shares for d in s.diverged_at)  # some rows left the shared path
    assert [g.token_ids for g in base.generations] == [
        g.token_ids for g in generate(handle, targets, cfg, track=TRACK).generations
    ]


def test_reports_name_a_path_claims_receivers():
    from harness.claims.label import patch_label
    from harness.report.markdown import _condition

    claim = {"kind": "path", "patch_mode": "z", "receivers": "direct", "heads": "21:1", "source": "gratitude"}
    assert patch_label(claim) == "path z → direct"
    assert patch_label({"patch_mode": "z"}) == "z"
    versus = {"heads": "21:1", "patch_mode": "z", "source": "gratitude", "receivers": "later"}
    assert _condition(versus, claim) == "receivers later"
    assert (
        _condition(
            {"heads": "1:1", "patch_mode": "z", "source": "gratitude"},
            {"heads": "1:1", "patch_mode": "v_only", "source": "gratitude"},
        )
        == "mode z"
    )
