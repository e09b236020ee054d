"""The run cache (harness/claims/run_cache.py): a warm rerun reads every run and gives the same
results; a corrupted, tampered or foreign entry is detected and the run generated again; the key
changes with whatever decides a run."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import replace

import pytest

import harness
from harness.claims.run_cache import RunCache, payload_to_result, result_to_payload, run_key
from harness.claims.session import ClaimSession
from harness.cli.cache import main as cache_main
from harness.model.store import ModelStore

COMMON = dict(model="tiny-gpt2", metric="gratitude_logprob", direction="increase", source="gratitude",
              target="neutral", n_prompts=5, max_tokens=5, tier="fast")  # fmt: skip
CLAIMS = [
    harness.Claim(id="z", heads="1:0", patch_mode="z", random_heads=2, **COMMON),
    harness.Claim(id="pattern_v", heads="1:1", patch_mode="pattern_v", **COMMON),
]


def _records(results) -> dict:
    from harness.analysis.bench import _verdicts

    return _verdicts(results)


def _session(claims, cache, models):
    return ClaimSession(claims, cache=cache, models=models)


@pytest.fixture
def models(tiny_gpt2):
    store = ModelStore()
    store.add("tiny-gpt2", tiny_gpt2)
    return store


def test_a_warm_run_reads_every_run_and_gives_identical_results(tmp_path, models):
    cache = RunCache(tmp_path)
    cold = _records(_session(CLAIMS, cache, models).results())
    stored = cache.stats.stored
    assert stored == len(_session(CLAIMS, None, models).plan().runs) and cache.stats.hits == 0
    cache.stats.stored = 0
    warm = _records(_session(CLAIMS, cache, models).results())
    assert cache.stats.hits == stored and cache.stats.stored == 0 and cache.stats.corrupted == 0
    assert warm == cold
    uncached = _records(_session(CLAIMS, None, models).results())
    assert uncached == cold  # the cache changes nothing a run computes


def test_adding_a_claim_generates_only_its_runs(tmp_path, models):
    cache = RunCache(tmp_path)
    _session(CLAIMS[:1], cache, models).results()
    first = cache.stats.stored
    cache.stats.stored = 0
    _session(CLAIMS, cache, models).results()
    # the second claim shares the first's baseline: only its patched run is new
    assert cache.stats.hits == first and cache.stats.stored == 1


def _entries(cache: RunCache):
    files = cache.entries()
    assert files
    return files


@pytest.fixture(scope="module")
def cold(tmp_path_factory, tiny_gpt2):
    """One cold run's cache folder and records (each test damages a copy of it)."""
    store = ModelStore()
    store.add("tiny-gpt2", tiny_gpt2)
    root = tmp_path_factory.mktemp("cold")
    return root, _records(_session(CLAIMS, RunCache(root), store).results())


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "edited payload", "other key", "not gzip"])
def test_a_damaged_entry_is_detected_and_the_run_generated_again(tmp_path, models, damage, cold):
    root, records = cold
    tmp_path = tmp_path / "cache"
    shutil.copytree(root, tmp_path)
    cache = RunCache(tmp_path)
    victim = _entries(cache)[0]
    raw = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "bit flip":
        victim.write_bytes(raw[:40] + bytes([raw[40] ^ 0x10]) + raw[41:])
    elif damage in ("edited payload", "other key"):
        entry = json.loads(gzip.decompress(raw))
        if damage == "edited payload":  # a token changed, the recorded sha256 left as it was
            entry["payload"]["generations"][0]["text"] += " thanks"
        else:  # a valid entry of another run, copied over this one
            entry["key"]["run"]["generation"]["seed"] += 1
        victim.write_bytes(gzip.compress(json.dumps(entry).encode()))
    else:
        victim.write_bytes(b"not a cache entry")
    warm_cache = RunCache(tmp_path)
    lines: list[str] = []
    session = ClaimSession(CLAIMS, cache=warm_cache, models=models, progress=lines.append)
    _same_up_to_packing(_records(session.results()), records)
    assert warm_cache.stats.corrupted == 1 and warm_cache.stats.stored == 1
    assert any(str(victim) in line and "generating the run again" in line for line in lines)
    again = RunCache(tmp_path)
    _session(CLAIMS, again, models).results()
    assert again.stats.corrupted == 0 and again.stats.stored == 0  # the entry was written anew


def _same_up_to_packing(a: dict, b: dict) -> None:
    """Equal verdicts, texts and p-values; per-prompt values within 1e-5. A run generated again
    alone (its cache entry was damaged) runs in a pack of another size than in the cold run, and
    a pack's batch size rounds model-side log-probs in their last digits (docs/claims.md)."""
    import numpy as np

    assert a.keys() == b.keys()
    for cid in a:
        x, y = a[cid], b[cid]
        for key in ("verdict", "p_raw", "p_adjusted", "claim", "text_changed"):
            assert x[key] == y[key], (cid, key)
        gx, gy = json.loads(x["generations"]), json.loads(y["generations"])
        assert [(g["baseline"], g["patched"]) for g in gx] == [(g["baseline"], g["patched"]) for g in gy]
        px, py = json.loads(x["per_prompt"]), json.loads(y["per_prompt"])
        for k in px:
            if isinstance(px[k], list) and px[k] and isinstance(px[k][0], float):
                np.testing.assert_allclose(px[k], py[k], rtol=1e-5, atol=1e-6)


def test_the_payload_round_trips_exactly(tiny_gpt2):
    from harness.metrics.next_token import keyword_tracks
    from harness.run.generation import GenerationConfig, generate

    cfg = GenerationConfig(max_tokens=6, do_sample=True, samples=2, seed=3)
    res = generate(tiny_gpt2, ["Hello there", "Thank you so much"], cfg, track=keyword_tracks(tiny_gpt2.tokenizer))
    back = payload_to_result(json.loads(json.dumps(result_to_payload(res))))
    assert back == res  # token ids, texts and every tracked float32 value


def test_the_key_changes_with_what_decides_a_run(models):
    plan = _session(CLAIMS, None, models).plan()
    handle = models("tiny-gpt2")
    track = {"gratitude": [1, 2, 3]}
    run = plan.groups[0].arms[0]
    key = run_key(run, handle, track)
    assert key is not None and key == run_key(run, handle, dict(track))
    other_seed = replace(run, key=replace(run.key, generation=run.key.generation.model_copy(update={"seed": 9})))
    other_weights = replace(handle, weights_sha256="0" * 64)
    other_template = replace(handle, digests={**handle.digests, "chat_template_sha256": "1" * 64})
    for changed in (
        run_key(other_seed, handle, track),
        run_key(run, other_weights, track),
        run_key(run, other_template, track),
        run_key(run, handle, {"gratitude": [1, 2, 4]}),
        run_key(replace(run, sources=run.sources[:-1]), handle, track),
    ):
        assert changed is not None and RunCache.digest(changed) != RunCache.digest(key)


def test_a_mode_defined_in_a_users_file_is_keyed_by_that_file(tmp_path, models, monkeypatch):
    import importlib.util

    from harness.patch.modes import MODES

    src = tmp_path / "my_modes.py"
    body = (
        "import torch, harness\n@harness.register_mode('cache_test_mode')\n"
        "def mode(row):\n    return torch.zeros(len(row.qs_t), row.d_head) * {scale}\n"
    )
    src.write_text(body.format(scale=1.0))
    spec = importlib.util.spec_from_file_location("my_modes", src)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        claim = CLAIMS[0].replace(id="mine", patch_mode="cache_test_mode", random_heads=0)
        run = next(r for r in _session([claim], None, models).plan().runs if r.key.kind == "patched")
        handle = models("tiny-gpt2")
        before = run_key(run, handle, {})
        src.write_text(body.format(scale=2.0))
        after = run_key(run, handle, {})
        assert before["extension_sha256"] != after["extension_sha256"]
    finally:
        MODES.pop("cache_test_mode", None)


def test_cache_info_and_clear(tmp_path, models, monkeypatch, capsys):
    monkeypatch.setenv("CAUSAL_HEADS_RUN_CACHE", str(tmp_path / "runs"))
    cache = RunCache.default()
    assert cache is not None
    _session(CLAIMS[:1], cache, models).results()
    n = cache.stats.stored
    assert cache_main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == n and info["bytes"] > 0 and info["root"] == str(tmp_path / "runs")
    assert cache_main(["clear"]) == 0
    assert f"{n} runs deleted" in capsys.readouterr().out
    assert RunCache.default().entries() == []
    monkeypatch.setenv("CAUSAL_HEADS_RUN_CACHE", "off")
    assert RunCache.default() is None
    with pytest.raises(harness.UserError, match="off"):
        cache_main(["info"])
