"""Circuit analyses of one head: DLA against the model's own modules, OV against a one-token run, the command."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_MODELS, load_tiny, tiny_params
from harness.analysis import circuit
from harness.model.hooks import ADAPTERS
from harness.model.weights import final_norm, output_norm
from harness.run.prompts import load_emotion_prompts, load_prompt_set


def _eps(norm) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-5)))


def _scale(norm, y: torch.Tensor) -> torch.Tensor:
    """The scale a norm divides by (LayerNorm: std; RMSNorm: rms), computed here, not by the library."""
    if isinstance(norm, torch.nn.LayerNorm):
        return (y.var(-1, keepdim=True, unbiased=False) + _eps(norm)).sqrt()
    return (y.pow(2).mean(-1, keepdim=True) + _eps(norm)).sqrt()


def _frozen(norm, y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The *real* norm module evaluated with its scale frozen at ``scale``: norms are scale-invariant,
    so rescaling the module's (bias-free) output by its own scale over the frozen one does it."""
    bias = norm.bias if isinstance(norm, torch.nn.LayerNorm) and norm.bias is not None else 0.0
    return (norm(y) - bias) * _scale(norm, y) / scale + bias


@pytest.mark.parametrize("name", tiny_params())
def test_dla_is_the_logit_change_of_removing_the_head_from_the_direct_path(name):
    """a = the head's DLA equals logits(x) − logits(x − w) with the final norm's scale frozen, where
    w (the head's write) is measured from the model's own forward: the layer's attention output
    with and without the head (z zeroed), through the attention-output norm where there is one."""
    handle = load_tiny(name)
    shape, model = handle.shape, handle.model
    layer, head = shape.n_layers - 2, shape.n_heads - 1
    ids = torch.randint(0, shape.vocab_size, (3, 9), generator=torch.Generator().manual_seed(1))
    store: dict = {}

    def keep(key):
        return lambda t, hook: store.__setitem__(key, t.detach().clone())

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z

    hooks = [
        (f"blocks.{layer}.attn.hook_z", keep("z")),
        (f"blocks.{layer}.attn.hook_attn_out", keep("attn_out")),
        (f"blocks.{shape.n_layers - 1}.hook_resid_post", keep("x")),
    ]
    with torch.no_grad(), handle.hooked.hooks(fwd_hooks=hooks):
        logits = model(input_ids=ids).logits
    with (
        torch.no_grad(),
        handle.hooked.hooks(
            fwd_hooks=[
                (f"blocks.{layer}.attn.hook_z", zero_head),
                (f"blocks.{layer}.attn.hook_attn_out", keep("ablated")),
            ]
        ),
    ):
        model(input_ids=ids)
    with torch.no_grad():
        attn, ablated, x = store["attn_out"], store["ablated"], store["x"]
        write = attn - ablated
        post = output_norm(handle.hooked, layer)
        if post is not None:  # Gemma 2/3: the write is the normed output's change, scale frozen
            write = _frozen(post, attn, _scale(post, attn)) - _frozen(post, ablated, _scale(post, attn))
        norm = final_norm(handle.hooked)
        s = _scale(norm, x)
        unembed = model.get_output_embeddings()
        change = unembed(_frozen(norm, x, s)) - unembed(_frozen(norm, x - write, s))
        a = circuit.direct_logits(handle, layer, head, store["z"][:, :, head], attn, x)
        if getattr(model.config, "final_logit_softcapping", None) is None:
            # the frozen norm at the stream's own scale is the norm: the model's logits come back
            torch.testing.assert_close(unembed(_frozen(norm, x, s)), logits, atol=1e-4, rtol=1e-4)
    assert a.abs().max() > 1e-3  # the head writes something (a zero head would pass trivially)
    torch.testing.assert_close(a, change, atol=2e-5 * float(change.abs().max()) + 1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    "name", tiny_params([m for m in TINY_MODELS if m != "tiny-gpt2"])
)  # GPT-2 adds position embeddings
def test_ov_circuit_is_what_the_head_writes_from_a_one_token_context(name):
    """At layer 0 a one-token context is the token's embedding and the head attends to it alone,
    so the OV circuit's logits equal the model's own: the head's attention-output contribution
    (with and without it) through the final norm's gain and the unembedding, centred."""
    handle = load_tiny(name)
    shape, model = handle.shape, handle.model
    head = shape.n_heads - 1
    tokens = torch.tensor([3, 17, 41])
    store: dict = {}

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z

    outs = []
    for hooks in ([], [("blocks.0.attn.hook_z", zero_head)]):
        with (
            torch.no_grad(),
            handle.hooked.hooks(
                fwd_hooks=hooks + [("blocks.0.attn.hook_attn_out", lambda t, hook: store.__setitem__("a", t.clone()))]
            ),
        ):
            model(input_ids=tokens[:, None])
        outs.append(store["a"][:, 0])
    write = outs[0] - outs[1]
    post = output_norm(handle.hooked, 0)
    if post is not None:  # a lone head's output through the output norm at its own scale
        write = post(write)
    norm = final_norm(handle.hooked)
    one = torch.ones(1, 1)
    with torch.no_grad():
        expected = model.get_output_embeddings()(
            _frozen(norm, write, one) - _frozen(norm, torch.zeros_like(write), one)
        )
        got = circuit.ov_logits(handle, 0, head, tokens)
    expected = expected - expected.mean(-1, keepdim=True)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_keyword_share_is_the_derivative_of_the_keyword_log_mass():
    """The first-order formula against a finite difference of log p(K) along a."""
    gen = torch.Generator().manual_seed(0)
    logits, a = (
        torch.randn(4, 50, generator=gen, dtype=torch.float64),
        torch.randn(4, 50, generator=gen, dtype=torch.float64),
    )
    kw = torch.tensor([2, 7, 11])

    def log_mass(x):
        return torch.logsumexp(x.log_softmax(-1)[:, kw], -1)

    eps = 1e-6
    numeric = (log_mass(logits + eps * a) - log_mass(logits - eps * a)) / (2 * eps)
    torch.testing.assert_close(circuit.keyword_share(a, logits, kw), numeric, atol=1e-7, rtol=1e-6)


def test_the_three_analyses_on_a_tiny_model_report_per_prompt_values():
    handle = load_tiny("tiny-llama-gqa")
    targets, sources = load_prompt_set("neutral").head(4), load_emotion_prompts("gratitude").head(4)
    d = circuit.dla(handle, targets, sources, "gratitude", 1, 3, max_tokens=5)
    assert len(d["target_generated"]["per_prompt"]) == 4 and len(d["target_generated"]["per_step_mean"]) == 5
    assert d["target_generated"]["ci_low"] <= d["target_generated"]["mean"] <= d["target_generated"]["ci_high"]
    o = circuit.ov(handle, targets, sources, "gratitude", 1, 3)
    assert 0 <= o["source"]["copying_share"] <= 1 and len(o["source"]["top_tokens"]) == 10
    q = circuit.qk(handle, targets, sources, "gratitude", 1, 3, max_tokens=5)
    parts = q["from_generated_positions"]
    # a query's attention sums to 1 over the prompt and the tokens generated so far
    total = (
        parts["prompt_text"]["mean"]
        + parts["template"]["mean"]
        + parts["first_token"]["mean"]
        + parts["generated"]["mean"]
    )
    assert total == pytest.approx(1.0, abs=1e-5)


def test_circuit_command_writes_the_document_and_png(tmp_path, main_in_process):
    out = tmp_path / "c.json"
    proc = main_in_process(
        "harness.cli.circuit",
        "dla",
        "--model",
        "tiny-gpt2",
        "--head",
        "1:2",
        "--emotion",
        "gratitude",
        "--n-prompts",
        "3",
        "--max-tokens",
        "4",
        "--output",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["head"] == "1:2" and doc["analysis"] == "dla" and doc["schema"] == "causal-heads/circuit"
    assert json.loads(out.read_text())["result"] == doc["result"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--head", "1:*"], "names 12 heads"),
        (["--head", "9:0"], "9"),
        (["--head", "1:0", "--max-tokens", "0"], "--max-tokens"),
        (["--head", "1:0", "--n-prompts", "1"], "--n-prompts"),
    ],
)
def test_circuit_command_refuses_bad_input_with_one_line(args, message, main_in_process, tmp_path):
    proc = main_in_process(
        "harness.cli.circuit",
        "ov",
        "--model",
        "tiny-gpt2",
        "--emotion",
        "gratitude",
        "--output",
        str(tmp_path / "x.json"),
        *args,
    )
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_heads_of_every_architecture_resolve_their_output_projection():
    for name in TINY_MODELS:  # the adapters the weights module relies on exist for every tiny model
        handle = load_tiny(name)
        assert ADAPTERS[handle.shape.architecture](handle.model, 0)[2] is not None


@pytest.mark.parametrize("analysis", ["ov", "qk"])
def test_circuit_command_summarises_each_analysis(analysis, tmp_path, main_in_process):
    out = tmp_path / f"{analysis}.json"
    proc = main_in_process(
        "harness.cli.circuit",
        analysis,
        "--model",
        "tiny-llama-gqa",
        "--head",
        "1:5",
        "--emotion",
        "gratitude",
        "--n-prompts",
        "3",
        "--max-tokens",
        "3",
        "--output",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["head"] == "1:5" and doc["kv_head"] == 5 // (6 // 2)
    first = {"ov": "OV circuit over", "qk": "attention from generated positions"}[analysis]
    assert first in proc.stdout and f"wrote {out}" in proc.stdout
