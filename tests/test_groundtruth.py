"""The ground-truth models' truth, checked without the suite's code.

Everything here reads the shipped files directly (safetensors, tokenizer.json, truth.json) and
runs its own forward pass of the GPT-2 architecture in plain torch: no ``harness`` import, no
transformers model. So when ``causal-heads validate`` reports the suite's power and false
positives on these models, what counts as true and false was established independently.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import tomllib

import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GT = os.path.join(ROOT, "fixtures", "groundtruth")
MODELS = ("planted", "distractor", "induction")


class Gpt2:
    """A minimal GPT-2 forward (LayerNorm, causal attention, MLP, untied unembedding) with a hook
    that can replace one head's output (after its value mixing, before the output projection)."""

    def __init__(self, model: str) -> None:
        folder = os.path.join(GT, model)
        self.t = load_file(os.path.join(folder, "model.safetensors"))
        self.cfg = json.load(open(os.path.join(folder, "config.json")))
        vocab = json.load(open(os.path.join(folder, "tokenizer.json")))["model"]["vocab"]
        self.vocab, self.words = vocab, {i: w for w, i in vocab.items()}
        self.H = self.cfg["n_head"]
        self.dh = self.cfg["n_embd"] // self.H

    def ids(self, text: str) -> torch.Tensor:
        return torch.tensor([self.vocab[w] for w in text.split()])

    def ln(self, x: torch.Tensor, p: str) -> torch.Tensor:
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.cfg["layer_norm_epsilon"]) * self.t[p + ".weight"] + self.t[p + ".bias"]

    def forward(self, ids: torch.Tensor, replace: dict | None = None, record: dict | None = None) -> torch.Tensor:
        """Logits ``[pos, vocab]``; ``replace[(layer, head)] = z [pos, d_head]`` overrides that head's
        mixed values at the last position; ``record`` collects every head's z and pattern."""
        n, D, H, dh = len(ids), self.cfg["n_embd"], self.H, self.dh
        x = self.t["transformer.wte.weight"][ids] + self.t["transformer.wpe.weight"][:n]
        mask = torch.full((n, n), -math.inf).triu(1)
        for layer in range(self.cfg["n_layer"]):
            p = f"transformer.h.{layer}."
            qkv = self.ln(x, p + "ln_1") @ self.t[p + "attn.c_attn.weight"] + self.t[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, i * D : (i + 1) * D].reshape(n, H, dh).transpose(0, 1) for i in range(3))
            pattern = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh) + mask, -1)
            z = (pattern @ v).transpose(0, 1).clone()  # [pos, head, d_head]
            for (rl, rh), value in (replace or {}).items():
                if rl == layer:
                    z[-1, rh] = value
            if record is not None:
                record[layer] = {"z": z.clone(), "pattern": pattern}
            x = x + z.reshape(n, D) @ self.t[p + "attn.c_proj.weight"] + self.t[p + "attn.c_proj.bias"]
            h = self.ln(x, p + "ln_2") @ self.t[p + "mlp.c_fc.weight"] + self.t[p + "mlp.c_fc.bias"]
            x = (
                x
                + torch.nn.functional.gelu(h, approximate="tanh") @ self.t[p + "mlp.c_proj.weight"]
                + self.t[p + "mlp.c_proj.bias"]
            )
        return self.ln(x, "transformer.ln_f") @ self.t["lm_head.weight"].T

    def head_out(self, layer: int, head: int) -> torch.Tensor:
        """The rows of the output projection that head writes through: ``[d_head, d_model]``."""
        w = self.t[f"transformer.h.{layer}.attn.c_proj.weight"]
        return w[head * self.dh : (head + 1) * self.dh]


def truth(model: str) -> dict:
    return json.load(open(os.path.join(GT, model, "truth.json")))


def prompts(model: str, name: str) -> list[str]:
    return json.load(open(os.path.join(GT, model, "prompts", f"{name}_prompts.json")))["prompts"]


def keywords(model: str, emotion: str) -> list[str]:
    return json.load(open(os.path.join(GT, model, "prompts", f"{emotion}_keywords.json")))["keywords"]


def head(spec: str) -> tuple[int, int]:
    a, b = spec.split(":")
    return int(a), int(b)


def log_mass(logits: torch.Tensor, ids: list[int]) -> float:
    lp = torch.log_softmax(logits.double(), -1)
    return torch.logsumexp(lp[ids], 0).item()


@pytest.mark.parametrize("model", MODELS)
def test_files_are_small_complete_and_in_the_wheel(model):
    folder = os.path.join(GT, model)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "truth.json"):
        assert os.path.isfile(os.path.join(folder, name)), name
    assert os.path.getsize(os.path.join(folder, "model.safetensors")) < 5 * 2**20
    t = truth(model)
    for name in (t["emotion"], t["target"]):
        assert len(prompts(model, name)) == 400
    m = Gpt2(model)
    for layer in range(m.cfg["n_layer"]):  # attention-only: every MLP weight is zero
        for part in ("c_fc", "c_proj"):
            assert not m.t[f"transformer.h.{layer}.mlp.{part}.weight"].any()
    # every shipped file matches a package-data pattern of the wheel's harness._groundtruth
    patterns = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["tool"]["setuptools"]["package-data"][
        "harness._groundtruth"
    ]
    for base, _, files in os.walk(folder):
        for f in files:
            rel = os.path.relpath(os.path.join(base, f), GT)
            assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


@pytest.mark.parametrize("model", ["planted", "distractor"])
def test_planted_head_maps_triggers_to_mood_words_and_nothing_else(model):
    m, t = Gpt2(model), truth(model)
    mood = [m.vocab[w] for w in t["mood_words"]]
    layer, h = head(t["causal"][0])
    # the OV circuit of the planted head applied to every token of the vocabulary, read by the unembedding
    p = f"transformer.h.{layer}."
    emb = m.t["transformer.wte.weight"]
    v = (
        m.ln(emb, p + "ln_1") @ m.t[p + "attn.c_attn.weight"][:, 2 * m.cfg["n_embd"] :]
        + m.t[p + "attn.c_attn.bias"][2 * m.cfg["n_embd"] :]
    )
    out = v[:, h * m.dh : (h + 1) * m.dh] @ m.head_out(layer, h)
    trig = torch.tensor([m.vocab[w] for w in t["trigger_words"]])
    other = torch.tensor([i for i in range(len(m.vocab)) if i not in set(trig.tolist())])
    shift = (out[trig].mean(0) - out[other].mean(0)) @ m.t["lm_head.weight"].T  # trigger minus non-trigger value
    not_mood = [i for i in range(len(m.vocab)) if i not in mood]
    assert shift[mood].min() > 0.5 and shift[not_mood].abs().max() < 1e-4 * shift[mood].min()


@pytest.mark.parametrize("model", MODELS)
def test_inert_heads_write_nothing_any_logit_or_later_head_reads(model):
    m, t = Gpt2(model), truth(model)
    D = m.cfg["n_embd"]
    for spec in t["inert"]:
        layer, h = head(spec)
        w_out = m.head_out(layer, h)
        assert (w_out @ m.t["lm_head.weight"].T).abs().max() < 1e-5, spec
        for later in range(layer + 1, m.cfg["n_layer"]):
            read = m.t[f"transformer.h.{later}.attn.c_attn.weight"]
            assert (w_out @ read).abs().max() < 1e-5, (spec, later)
        assert D == w_out.shape[1]


def _patched_mass(
    m: Gpt2, target: str, source: str, spec: str, ids: list[int]
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    layer, h = head(spec)
    rec: dict = {}
    m.forward(m.ids(source), record=rec)
    base = m.forward(m.ids(target))[-1]
    patched = m.forward(m.ids(target), replace={(layer, h): rec[layer]["z"][-1, h]})[-1]
    return log_mass(base, ids), log_mass(patched, ids), base, patched


@pytest.mark.parametrize("model", ["planted", "distractor"])
def test_patching_behaves_as_the_truth_says(model):
    """Own forward, last position: the causal head's source output raises the mood words' mass by
    nats; an inert head's (or the distractor's) changes it by less than float rounding."""
    m, t = Gpt2(model), truth(model)
    ids = [m.vocab[w] for w in keywords(model, t["emotion"])]
    pairs = list(zip(prompts(model, t["target"])[:12], prompts(model, t["emotion"])[:12]))
    for target, source in pairs:
        before, after, _, _ = _patched_mass(m, target, source, t["causal"][0], ids)
        assert after - before > 2.5, (target, source)
        for spec in t["inert"] + t["distractors"]:
            before, after, base, patched = _patched_mass(m, target, source, spec, ids)
            assert abs(after - before) < 1e-5, (spec, target, source)
    for spec in t["distractors"]:  # it moves the text: the distribution over other words shifts
        _, _, base, patched = _patched_mass(m, *pairs[0], spec, ids)
        kl = torch.nn.functional.kl_div(
            torch.log_softmax(patched, -1), torch.log_softmax(base, -1), log_target=True, reduction="sum"
        )
        assert kl.item() > 0.1


def test_induction_heads_attend_and_copy_as_the_truth_says():
    m, t = Gpt2("induction"), truth("induction")
    prev, ind = head(t["previous_token"][0]), head(t["causal"][0])
    g = torch.Generator().manual_seed(0)
    ordinary = [i for w, i in m.vocab.items() if w not in t["answer_words"] and not w.startswith("<")]
    seg = torch.tensor(ordinary)[torch.randperm(len(ordinary), generator=g)[:15]]
    x = torch.cat([seg, seg])
    rec: dict = {}
    logits = m.forward(x, record=rec)
    n, L = len(x), len(seg)
    prev_attn = torch.stack([rec[prev[0]]["pattern"][prev[1], i, i - 1] for i in range(1, n)])
    # from the second token of the copy on (the first ties with position 0, whose "previous token" is itself)
    ind_attn = torch.stack([rec[ind[0]]["pattern"][ind[1], i, i - L + 1] for i in range(L + 1, n - 1)])
    assert prev_attn.min() > 0.99 and ind_attn.min() > 0.99
    assert (logits[L + 1 : -1].argmax(-1) == x[L + 2 :]).all()  # the second copy is predicted token by token
    answers = [m.vocab[w] for w in keywords("induction", "repeat")]
    for target, source in list(zip(prompts("induction", "neutral"), prompts("induction", "repeat")))[:12]:
        before, after, _, _ = _patched_mass(m, target, source, t["causal"][0], answers)
        assert after - before > 3.0
        for spec in t["inert"]:
            before, after, _, _ = _patched_mass(m, target, source, spec, answers)
            assert abs(after - before) < 1e-5
