"""Model folders and the converted-model cache (reliability round 2, classes 1 and 2).

One loader policy: a folder never runs its own code, loads all of its model or none of it
(nothing initialised at random, nothing damaged, nothing not finite, a real tokenizer), and
says why in one line; a cached conversion is trusted only when every file is as written.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from harness.core.errors import ModelUnavailableError
from harness.model import tiny
from harness.model.loading import load_converted, load_model
from harness.model.provenance import MANIFEST


def _saved_tiny_gpt2(folder):
    model, tok = tiny.build_tiny_gpt2()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _edit_weights(folder, edit):
    weights = load_file(folder / "model.safetensors")
    edit(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _shape(folder):
    import torch

    _edit_weights(folder, lambda w: w.__setitem__("transformer.h.0.attn.c_proj.weight", torch.zeros(3, 3)))


def _nan(folder):
    _edit_weights(folder, lambda w: w["transformer.h.0.attn.c_proj.weight"].__setitem__((0, 0), float("nan")))


def _truncated(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _emptied(folder):
    (folder / "model.safetensors").write_bytes(b"")


def _no_tokenizer(folder):
    for name in os.listdir(folder):
        if name not in ("config.json", "generation_config.json", "model.safetensors"):
            os.remove(folder / name)


@pytest.mark.parametrize(
    "damage, message",
    [
        (_shape, r"a weight's shape differs from what its config asks"),
        (_nan, r"weight transformer\.h\.0\.attn\.c_proj\.weight holds 1 value\(s\) that are not finite"),
        (_truncated, r"its weights file is damaged \(truncated, empty or not safetensors"),
        (_emptied, r"its weights file is damaged \(truncated, empty or not safetensors"),
        (_no_tokenizer, r"no tokenizer in the folder"),
    ],
    ids=["shape mismatch", "nan weight", "truncated safetensors", "empty safetensors", "no tokenizer"],
)
def test_a_damaged_model_folder_is_refused_in_one_line(tmp_path, damage, message):
    """Shape mismatches, truncated or empty safetensors and NaN weights ended in tracebacks (a shape
    mismatch after a load report); a folder without a tokenizer loaded with a one-token tokenizer
    built from nothing and failed deep inside source capture."""
    folder = _saved_tiny_gpt2(tmp_path / "m")
    load_model(str(folder))  # whole, it loads
    damage(folder)
    with pytest.raises(ModelUnavailableError, match=message) as info:
        load_model(str(folder))
    assert "\n" not in str(info.value)


def test_damage_is_exit_2_from_a_command(tmp_path, main_in_process):
    folder = _saved_tiny_gpt2(tmp_path / "m")
    _nan(folder)
    proc = main_in_process("harness", "demo", "--model", str(folder))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not finite" in proc.stderr


def test_custom_code_is_refused_on_a_terminal_without_asking(tmp_path):
    """Under a pseudo-terminal transformers would ask "run the custom code? [y/N]" and import the
    folder's Python on a yes: the command refuses in one line, exit 2, and asks nothing."""
    folder = _saved_tiny_gpt2(tmp_path / "m")
    marker = tmp_path / "it-ran"
    (folder / "evil.py").write_text(f"import os\nos.makedirs({str(marker)!r})\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="evil_custom",
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    primary, secondary = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "demo", "--model", str(folder)],
        stdin=secondary, stdout=secondary, stderr=secondary, env=env, close_fds=True,
    )
    os.close(secondary)
    chunks = []
    while True:  # a question would block here until the timeout; "y" is answered to anything asked
        try:
            data = os.read(primary, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
        if b"[y/N]" in data:
            os.write(primary, b"y\n")
    code = proc.wait(timeout=120)
    os.close(primary)
    out = b"".join(chunks).decode(errors="replace")
    assert code == 2, out
    assert "custom code" in out and "[y/N]" not in out and "Traceback" not in out
    assert not marker.exists()


# ------------------------------------------------------------ the converted-model cache


def _config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


TAMPERING = {
    "rope_theta edited": lambda f: _config(f, lambda c: c.update(rope_theta=c.get("rope_theta", 10000.0) * 2)),
    "chat template replaced": lambda f: (f / "chat_template.jinja").write_text("{{ 'steered: ' + messages }}"),
    "tokenizer edited": lambda f: (f / "tokenizer.json").write_text(
        (f / "tokenizer.json").read_text().replace('"unk_token"', '"unk_tokenX"', 1) + " "
    ),
    "weights truncated": _truncated,
    "weights emptied": _emptied,
    "a file missing": lambda f: os.remove(f / "config.json"),
    "manifest missing (half-copied)": lambda f: os.remove(f / MANIFEST),
    "manifest unreadable": lambda f: (f / MANIFEST).write_text("{"),
}


@pytest.mark.parametrize("cases", [
    ["rope_theta edited"],
    pytest.param(list(TAMPERING), marks=pytest.mark.slow),  # every tampering: a conversion each (~30 s)
], ids=["one", "all"])  # fmt: skip
def test_a_tampered_cache_entry_is_detected_and_rebuilt(tmp_path, capsys, cases):
    """The cache was trusted blindly: an edited rope_theta or chat template loaded under the same
    weights hash, a truncated entry was a traceback. Every file is now checked against the
    manifest written at conversion; any damage is said and the entry rebuilt from the source."""
    conversions = []

    def convert():
        conversions.append(1)
        return tiny.build_tiny_llama_gqa()

    entry = tmp_path / "cache" / "tiny-llama"
    args = ("tiny", "test-source", str(entry), "ab" * 32, convert, "plain")
    first = load_converted(*args)
    assert (entry / MANIFEST).is_file() and len(conversions) == 1
    again = load_converted(*args)  # intact: read from the cache, not converted
    assert len(conversions) == 1 and again.provenance() == first.provenance()
    assert "not used" not in capsys.readouterr().err
    for n, what in enumerate(cases, start=2):
        TAMPERING[what](entry)
        rebuilt = load_converted(*args)
        err = capsys.readouterr().err
        assert len(conversions) == n, what
        assert f"the converted-model cache {entry} is not used" in err and "rebuilding it" in err, what
        assert rebuilt.provenance() == first.provenance(), what
        assert load_converted(*args).provenance() == first.provenance() and len(conversions) == n, what
    entry_parent = entry.parent
    import shutil

    shutil.rmtree(entry)
    entry.write_text("not a folder")
    assert load_converted(*args).provenance() == first.provenance()
    assert "(not a folder)" in capsys.readouterr().err
    assert sorted(p.name for p in entry_parent.iterdir()) == ["tiny-llama"]  # no temporaries left


def test_findings_provenance_records_config_tokenizer_and_chat_template(tmp_path, tiny_llama):
    """The same weights under an edited config, another tokenizer or another chat template hash
    differently, so findings and regress can tell them apart; a re-saved copy hashes alike."""
    base = tiny_llama.provenance()
    for key in ("config_sha256", "tokenizer_sha256", "chat_template_sha256"):
        assert key in base
    folder = tmp_path / "m"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    saved = load_model(str(folder)).provenance()
    for key in ("weights_sha256", "config_sha256", "tokenizer_sha256", "chat_template_sha256"):
        assert saved[key] == base[key], key
    _config(folder, lambda c: c.update(rms_norm_eps=c["rms_norm_eps"] * 10))
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    edited = load_model(str(folder)).provenance()
    assert edited["weights_sha256"] == base["weights_sha256"]
    assert edited["config_sha256"] != base["config_sha256"]
    assert edited["chat_template_sha256"] not in (None, base["chat_template_sha256"])
