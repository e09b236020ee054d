"""Model registry: shapes, determinism, offline loading and clear errors."""

from __future__ import annotations

import pytest
import torch

from harness.core.errors import ModelUnavailableError
from harness.model.loading import load_model, weights_sha256


def test_tiny_gpt2_shape_has_the_seed_head(tiny_gpt2):
    s = tiny_gpt2.shape
    assert (s.architecture, s.n_layers, s.n_heads, s.n_kv_heads, s.d_head) == ("gpt2", 2, 12, 12, 8)
    assert s.n_layers > 1 and s.n_heads > 10  # head 1:10 exists
    assert tiny_gpt2.tokenizer("Hello world").input_ids == [15496, 995]  # the real GPT-2 BPE


def test_tiny_llama_is_gqa(tiny_llama):
    s = tiny_llama.shape
    assert (s.architecture, s.n_layers, s.n_heads, s.n_kv_heads, s.d_head) == ("llama", 2, 6, 2, 16)
    assert s.group_size == 3


def test_tiny_models_are_deterministic_and_leave_global_rng_alone(tiny_gpt2):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    again = load_model("tiny-gpt2")
    assert torch.equal(torch.rand(3), expected)  # building did not consume the caller's RNG
    assert again.weights_sha256 == tiny_gpt2.weights_sha256


def test_weights_hash_changes_with_any_weight(tiny_llama):
    model = tiny_llama.model
    before = weights_sha256(model)
    w = model.model.layers[1].self_attn.v_proj.weight
    old = w[0, 0].item()
    with torch.no_grad():
        w[0, 0] += 1e-3
    try:
        assert weights_sha256(model) != before
    finally:
        with torch.no_grad():
            w[0, 0] = old
    assert weights_sha256(model) == before


@pytest.mark.model
def test_default_model_shape(smollm2):
    s = smollm2.shape
    assert (s.architecture, s.n_layers, s.n_heads, s.n_kv_heads, s.d_head, s.vocab_size) == (
        "llama", 30, 9, 3, 64, 49152)
    assert smollm2.prompt_format == "chat"
    assert smollm2.source.startswith("gguf:")
    assert smollm2.shape.describe() == "30 layers × 9 heads, 3 KV heads"


@pytest.mark.model
@pytest.mark.slow
def test_gguf_conversion_equals_cached_copy(tmp_path, monkeypatch, smollm2):
    """A fresh GGUF conversion and the cached safetensors copy carry identical weights.

    Slow (a minute: the conversion twice in a fresh CI). Every conversion checks the same at
    run time before publishing its copy (``_store_atomically``, tested per commit below).
    """
    monkeypatch.setenv("CAUSAL_HEADS_CACHE", str(tmp_path))
    converted = load_model("smollm2-135m")  # converts the GGUF, stores the copy
    assert len(list(tmp_path.iterdir())) == 1
    cached = load_model("smollm2-135m")  # reads the copy
    assert converted.weights_sha256 == cached.weights_sha256 == smollm2.weights_sha256
    text = "Thank you so much!<|im_end|>"
    assert converted.tokenizer(text).input_ids == cached.tokenizer(text).input_ids
    assert converted.tokenizer.chat_template == cached.tokenizer.chat_template
    assert converted.provenance() == cached.provenance()  # config, tokenizer, chat template digests too
    # an edited rope_theta in the cached copy is detected on the next load and the copy rebuilt
    import json

    (entry,) = tmp_path.iterdir()
    config = json.loads((entry / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 1.0
    (entry / "config.json").write_text(json.dumps(config))
    assert load_model("smollm2-135m").provenance() == smollm2.provenance()
    assert json.loads((entry / "config.json").read_text()) != config


def test_the_model_cache_is_published_only_when_it_reloads_identically(tmp_path, capsys, tiny_llama):
    from harness.model import loading as models

    target = tmp_path / "cache" / "tiny"
    models._store_atomically(str(target), tiny_llama.model, tiny_llama.tokenizer, tiny_llama.weights_sha256, "ab" * 32)
    again = load_model(str(target))
    assert again.weights_sha256 == tiny_llama.weights_sha256
    probe = models._TOKENIZER_PROBE
    assert again.tokenizer(probe).input_ids == tiny_llama.tokenizer(probe).input_ids
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny"]  # no temporary left

    # a copy that reloads to other weights than the model's is never published, and nothing
    # half-written stays
    bad = tmp_path / "cache" / "bad"
    models._store_atomically(str(bad), tiny_llama.model, tiny_llama.tokenizer, "0" * 64, "ab" * 32)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny"]
    err = capsys.readouterr().err
    assert f"not cached at {bad}" in err and "cached copy differs from the GGUF weights" in err

    class OtherTokenizer:  # same weights, a tokenizer that encodes differently
        chat_template = getattr(tiny_llama.tokenizer, "chat_template", None)

        def __call__(self, text):
            return tiny_llama.tokenizer(text + " extra")

        def save_pretrained(self, path):
            tiny_llama.tokenizer.save_pretrained(path)

    models._store_atomically(str(bad), tiny_llama.model, OtherTokenizer(), tiny_llama.weights_sha256, "ab" * 32)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["tiny"]
    assert "cached tokenizer differs from the GGUF tokenizer" in capsys.readouterr().err


def test_local_directory_loads(tmp_path, tiny_gpt2):
    tiny_gpt2.model.save_pretrained(tmp_path)
    tiny_gpt2.tokenizer.save_pretrained(tmp_path)
    h = load_model(str(tmp_path))
    assert h.weights_sha256 == tiny_gpt2.weights_sha256
    assert h.shape == tiny_gpt2.shape
    assert h.source == f"dir:{tmp_path}"


def test_a_local_directory_of_a_newly_supported_class_loads_with_its_class_recorded(tmp_path, tiny_model):
    tiny_model.model.save_pretrained(tmp_path)
    tiny_model.tokenizer.save_pretrained(tmp_path)
    h = load_model(str(tmp_path))
    assert (h.weights_sha256, h.shape) == (tiny_model.weights_sha256, tiny_model.shape)
    assert h.provenance()["model_class"] == type(tiny_model.model).__name__


def test_an_unsupported_model_class_is_named(tmp_path, tiny_gpt2):
    from transformers import OPTConfig, OPTForCausalLM

    OPTForCausalLM(OPTConfig(vocab_size=50257, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             ffn_dim=64, word_embed_proj_dim=32)).save_pretrained(tmp_path)
    tiny_gpt2.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelUnavailableError, match="model class OPTForCausalLM is not supported yet; supported: "
                                                    "GPT2LMHeadModel, GPTNeoXForCausalLM, Gemma2ForCausalLM, "
                                                    "Gemma3ForCausalLM, GemmaForCausalLM, LlamaForCausalLM, "
                                                    "MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("name, fragment", [
    ("gpt2", "not on this machine"),
    ("org/some-model", "--model /path/to/dir"),
    ("smolm2-135m", "Did you mean 'smollm2-135m'?"),
    ("/no/such/dir", "neither a registered model nor an existing directory"),
    ("", ("Available: gpt2, groundtruth-distractor, groundtruth-induction, groundtruth-planted, smollm2-135m, tiny-gemma, tiny-gemma2, tiny-gemma3, tiny-gpt-neox, tiny-gpt2, "
         "tiny-llama-gqa, tiny-mistral-swa, tiny-phi3, tiny-qwen2, tiny-qwen3")),
])
def test_unavailable_models_raise_a_user_error(name, fragment):
    if name == "gpt2" and _gpt2_in_hf_cache():
        pytest.skip("gpt2 weights are in this machine's HF cache, so gpt2 is available here")
    with pytest.raises(ModelUnavailableError) as info:
        load_model(name)
    assert fragment in str(info.value)


def test_empty_directory_says_what_is_missing(tmp_path):
    with pytest.raises(ModelUnavailableError, match="holds no loadable model.*config.json"):
        load_model(str(tmp_path))


def _gpt2_in_hf_cache() -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, "config.json"), str)
               for repo in ("gpt2", "openai-community/gpt2"))


@pytest.mark.parametrize("model, real_process", [("org/absent-model", True), ("/no/such/dir", False),
                                                  ("nope", False)])
def test_cli_unavailable_model_exits_2_without_traceback(cli, main_in_process, model, real_process):
    proc = (cli if real_process else main_in_process)("harness", "demo", "--model", model, "--max-tokens", "2")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_weights_absent_is_a_cheap_offline_check(tmp_path, monkeypatch):
    """Says why a Hugging Face model's weights are missing without loading anything (claims are
    skipped with this reason; the main job refuses such a --model before running)."""
    import huggingface_hub.constants

    from harness.model.loading import weights_absent

    repo = tmp_path / "hub" / "models--org--present"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert weights_absent("org/present") is None
    assert weights_absent("org/absent") == ("org/absent weights are not in the local Hugging Face cache; provide "
                                            "them (see README) or run with --model org/absent=/path/to/absent-dir")
    assert weights_absent("gpt2").startswith("gpt2 weights are not in the local Hugging Face cache")
    assert weights_absent("smollm2-135m") is None and weights_absent("tiny-gpt2") is None
    assert weights_absent(str(tmp_path)) is None  # a directory: loading it reports what is missing


class _Planted:
    """A pickle that would create a folder when unpickled: proof that nothing unpickled it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.makedirs, (self.marker,))


def test_a_model_folder_with_a_pickled_bin_is_refused_in_one_message_and_never_unpickled(tmp_path):
    """Reliability class 8: torch's weights_only refusal reached the terminal as a traceback."""
    import pickle

    from harness.core.errors import ModelUnavailableError
    from harness.model import tiny
    from harness.model.loading import load_model

    model, tok = tiny.build_tiny_gpt2()
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "it-ran"
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"w": _Planted(str(marker))}, fh)
    with pytest.raises(ModelUnavailableError, match=r"its pickled weights file \(.bin\) holds more than tensors"):
        load_model(str(folder))
    assert not marker.exists()


def test_a_model_folder_whose_config_names_custom_code_never_runs_it(tmp_path, monkeypatch):
    """Reliability round 2, class 1: a folder whose config.json names its own Python (``auto_map``)
    made transformers ask "run the custom code? [y/N]" on a terminal, and a yes imported the
    folder's code. The loader passes trust_remote_code=False: no question is asked (here one would
    be answered yes), the code is never imported, and the refusal is one message."""
    import builtins
    import json

    from harness.core.errors import ModelUnavailableError
    from harness.model import tiny
    from harness.model.loading import load_model

    model, tok = tiny.build_tiny_gpt2()
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    marker = tmp_path / "it-ran"
    (folder / "evil.py").write_text(f"import os\nos.makedirs({str(marker)!r})\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil_custom", auto_map={"AutoConfig": "evil.EvilConfig",
                                                      "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    asked: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or "y")
    with pytest.raises(ModelUnavailableError, match=r"its config names custom code \(auto_map\)"):
        load_model(str(folder))
    assert asked == [] and not marker.exists()


@pytest.mark.parametrize("damage", ["a tensor dropped", "a layer more in the config"])
def test_a_checkpoint_missing_weights_is_refused_not_filled_at_random(tmp_path, damage):
    """Reliability round 2, class 1: a checkpoint missing tensors, or a config with one layer more
    than the weights, loaded with random weights (a new weights hash on every load) and exit 0."""
    import json

    from safetensors.torch import load_file, save_file

    from harness.core.errors import ModelUnavailableError
    from harness.model import tiny
    from harness.model.loading import load_model

    model, tok = tiny.build_tiny_gpt2()
    folder = tmp_path / "m"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    assert load_model(str(folder)).shape.n_layers == 2  # whole, it loads
    if damage == "a tensor dropped":
        weights = load_file(folder / "model.safetensors")
        del weights["transformer.h.0.attn.c_proj.weight"]
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        first = "transformer.h.0.attn.c_proj.weight"
    else:
        config = json.loads((folder / "config.json").read_text())
        config["n_layer"] = 3
        (folder / "config.json").write_text(json.dumps(config))
        first = "transformer.h.2."
    with pytest.raises(ModelUnavailableError, match=rf"missing from its checkpoint \(first: {first}"):
        load_model(str(folder))
