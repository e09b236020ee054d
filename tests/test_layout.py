"""The package layout: layer contracts, no hidden imports, one console script, an installable plugin."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from harness.cli import main as cli_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PYPROJECT = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
# the one import deferred inside a function: the HF reference process must run without TransformerLens
LAZY_ALLOWED = {("harness/model/loading.py", "harness.model.hooks")}


def _lint_imports(root: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run([os.path.join(BIN, "lint-imports"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _copy(tmp_path) -> str:
    root = str(tmp_path / "copy")
    shutil.copytree(os.path.join(ROOT, "harness"), os.path.join(root, "harness"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), root)
    return root


def _plant(root: str, module: str, line: str) -> None:
    path = os.path.join(root, *module.split(".")) + ".py"
    with open(path, "a") as fh:
        fh.write(f"\n{line}\n")


def test_layer_contracts_hold_and_catch_an_upward_import_and_a_cycle(tmp_path):
    kept = _lint_imports(ROOT)
    assert kept.returncode == 0 and "2 kept, 0 broken" in kept.stdout, kept.stdout + kept.stderr

    upward = _copy(tmp_path / "up")  # the statistics layer reaching up into the claims layer
    _plant(upward, "harness.stats", "from harness.claims import outcome  # noqa")
    broken = _lint_imports(upward)
    assert broken.returncode != 0 and "harness.stats is not allowed to import harness.claims" in broken.stdout

    cycle = _copy(tmp_path / "cycle")  # two modules of one package importing each other, function-level
    _plant(cycle, "harness.report.text", "def _late():\n    from harness.report import markdown  # noqa")
    broken = _lint_imports(cycle)
    assert broken.returncode != 0 and "No cycles among the modules of any package BROKEN" in broken.stdout
    assert ".text -> .markdown" in broken.stdout or ".markdown -> .text" in broken.stdout, broken.stdout


def test_no_function_level_imports_of_our_own_modules():
    """Imports sit at the top of each module (import-linter sees them either way); the lazy public
    names of ``harness/__init__.py`` are the one place that defers imports for start-up time."""
    found = []
    for path in glob.glob(os.path.join(ROOT, "harness", "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, ROOT)
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("harness"):
                        if (rel, sub.module) not in LAZY_ALLOWED:
                            found.append(f"{rel}:{sub.lineno} {sub.module}")
    assert found == []


def test_every_package_is_in_the_wheel_list_and_has_a_one_line_docstring():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"]) - {"harness._prompts", "harness._groundtruth"}  # data
    tree = {os.path.relpath(os.path.dirname(p), ROOT).replace(os.sep, ".")
            for p in glob.glob(os.path.join(ROOT, "harness", "**", "__init__.py"), recursive=True)}
    assert listed == tree
    for pkg in tree - {"harness"}:
        doc = ast.get_docstring(ast.parse(open(os.path.join(ROOT, *pkg.split("."), "__init__.py")).read()))
        assert doc and doc.splitlines()[0].rstrip().endswith("."), pkg  # a one-line summary first
    layers = {name.strip() for layer in PYPROJECT["tool"]["importlinter"]["contracts"][0]["layers"]
              for name in layer.split("|")}
    assert tree - {"harness"} <= layers


def test_the_console_script_lists_every_command_and_each_has_help(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("evidence", "patch", "sweep", "screen", "report", "regress", "nightly", "calibrate", "bench",
                 "demo", "metrics", "prompts", "browser", "validate"):
        assert f"\n  {name} " in out
        with pytest.raises(SystemExit) as info:
            cli_main.main([name, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_python_m_aliases_run_the_same_commands():
    import importlib

    for alias, command in (("head_patching", "patch"), ("report.__main__", "report"), ("metrics.__main__", "metrics")):
        module = importlib.import_module(f"harness.{alias}")
        assert module.main is importlib.import_module(f"harness.cli.{command}").main, alias


def test_python_m_harness_reaches_every_command_and_the_research_logs_command_works(cli):
    """``python -m harness COMMAND`` is the console script; the research log's own spelling stays."""
    proc = cli("harness", "sweep", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout and "--emotion" in proc.stdout, proc.stderr[-2000:]
    proc = cli("harness.head_patching", "--help")
    assert proc.returncode == 0 and "--head-spec" in proc.stdout and "--patch-mode" in proc.stdout, proc.stderr[-2000:]


def _tree(path: str) -> ast.Module:
    with open(os.path.join(ROOT, path)) as fh:
        return ast.parse(fh.read())


def test_the_pipeline_has_no_hub_and_no_positional_keys():
    """Issue 35's shape, kept: at most 6 modules at the top of harness/ (the packages hold the rest);
    no class in harness/claims over 200 lines and no function in harness/ over 80; run keys are records
    (no ``key[...]`` in harness/claims); the Ray backend does not build a session."""
    top = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "harness", "*.py")))
    assert len(top) <= 6, top
    for path in sorted(glob.glob(os.path.join(ROOT, "harness", "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, ROOT)
        in_claims = rel.startswith(os.path.join("harness", "claims"))
        assert not in_claims or "key[" not in open(path).read(), rel
        for node in ast.walk(_tree(rel)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
            if isinstance(node, ast.ClassDef) and in_claims:
                assert size <= 200, (rel, node.name, size)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):  # every function in harness/
                assert size <= 80, (rel, node.name, size)
    for path in glob.glob(os.path.join(ROOT, "harness", "distributed", "*.py")):
        assert "ClaimSession" not in open(path).read() and "claims.session" not in open(path).read(), path


def test_hook_point_names_are_built_in_one_place():
    """``blocks.{layer}...`` is spelled only by harness.model.names.act_name (as TransformerLens's get_act_name)."""
    from harness.model.names import act_name, hook_layer, is_pattern

    assert act_name("z", 3) == "blocks.3.attn.hook_z" and act_name("resid_post", 0) == "blocks.0.hook_resid_post"
    assert hook_layer(act_name("pattern", 12)) == 12 and is_pattern(act_name("pattern", 1))
    assert not is_pattern(act_name("z", 1))
    with pytest.raises(ValueError, match="hook point kind 'q'"):
        act_name("q", 0)  # type: ignore[arg-type]
    spelled = []
    for path in glob.glob(os.path.join(ROOT, "harness", "**", "*.py"), recursive=True):
        if path.endswith(os.path.join("model", "names.py")):
            continue
        for node in ast.walk(_tree(os.path.relpath(path, ROOT))):
            if isinstance(node, ast.JoinedStr) and any(
                isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.startswith("blocks.")
                for v in node.values
            ):
                spelled.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert spelled == []


def test_an_unknown_command_is_one_line_and_exit_2(main_in_process):
    proc = main_in_process("harness.cli.main", "regres")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown command 'regres'. Did you mean 'regress'")


CLAIMS_TINY = """\
[[claim]]
id = "tiny_identity"
model = "tiny-gpt2"
heads = "1:10"
patch_mode = "z"
source = "neutral"
metric = "sentiment"
direction = "equivalent"
margin = 0.01
n_prompts = 6
max_tokens = 4
tier = "fast"
"""


@pytest.mark.slow
def test_the_wheel_installs_and_its_plugin_runs_a_claim_file_in_an_empty_folder(tmp_path):
    """Built wheel, installed (not editable) into a fresh virtualenv; in an empty folder holding only
    claims_tiny.toml, ``python -m pytest claims_tiny.toml`` evaluates it and writes reports/findings.json.
    The fresh venv sees this venv's third-party packages through a .pth line (no downloads here), but
    not our editable install: harness must come from the wheel."""
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), ROOT], capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-2000:]
    shutil.rmtree(os.path.join(ROOT, "build"), ignore_errors=True)
    (wheel,) = dist.glob("causal_heads-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    fresh_site = next(venv.glob("lib/python3*/site-packages"))
    (fresh_site / "_deps.pth").write_text(site + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                              "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    project = tmp_path / "project"
    project.mkdir()
    (project / "claims_tiny.toml").write_text(CLAIMS_TINY)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CAUSAL_HEADS_PROMPTS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    helped = subprocess.run([str(venv / "bin" / "causal-heads"), "--help"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert helped.returncode == 0 and "  evidence " in helped.stdout
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "claims_tiny.toml", "-q", "-p",
                          "no:cacheprovider"], cwd=project, env=env, capture_output=True, text=True, timeout=900,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout
    import json

    doc = json.loads((project / "reports" / "findings.json").read_text())
    (claim,) = doc["claims"]
    assert claim["claim"]["id"] == "tiny_identity" and claim["verdict"] == "supported"
    assert claim["rerun"].startswith("pytest claims_tiny.toml -k 'tiny_identity-head_1_10'")
    assert sorted(os.listdir(project)) == ["claims_tiny.toml", "reports"]


def test_the_ini_option_names_a_projects_own_prompt_folder(pytester):
    """``causal_heads_prompts`` in the project's ini file: a claim may use an emotion the shipped
    folder lacks; it is resolved from the rootdir, and collection validates against it."""
    import json

    from harness.run import prompts

    folder = pytester.path / "my_prompts"
    shutil.copytree(prompts.PROMPTS_DIR, folder)
    (folder / "joy_prompts.json").write_text(json.dumps({
        "format": "causal-heads/prompts", "version": 1, "name": "joy", "kind": "emotion", "description": "joy",
        "prompts": [f"I am so happy about day {i}!" for i in range(8)]}))
    (folder / "joy_keywords.json").write_text(json.dumps({
        "format": "causal-heads/keywords", "version": 1, "emotion": "joy", "description": "joy",
        "keywords": ["happy", "joy"]}))
    pytester.makeini("[pytest]\ncausal_heads_prompts = my_prompts\n")
    (pytester.path / "claims_joy.toml").write_text(CLAIMS_TINY.replace('source = "neutral"', 'source = "joy"'))
    result = pytester.runpytest_subprocess("--co", "-q", "-p", "no:cacheprovider")
    assert result.ret == 0 and "claims_joy.toml::tiny_identity-head_1_10" in result.stdout.str()
    (pytester.path / "tox.ini").unlink()
    result = pytester.runpytest_subprocess("--co", "-q", "-p", "no:cacheprovider")
    assert result.ret == 2 and "field 'source' = 'joy'" in result.stdout.str()


def test_the_plugin_and_the_light_commands_start_without_torch():
    """The plugin loads in every pytest run of an environment that has the package, so it must not
    import torch before a claim file is collected; regress and report read JSON only."""
    code = ("import sys, harness.pytest_plugin.plugin, harness.cli.main, harness.cli.regress, harness.cli.report; "
            "from harness.model.device import placement; placement(None, None); "  # the plugin's configure check
            "print(sorted(m for m in ('torch', 'transformers', 'transformer_lens') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_the_dev_extra_holds_the_test_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras["test"]) <= set(extras["dev"])


def test_the_front_door_holds_the_names_a_user_needs():
    """``harness.__all__``: write claims, run them, read findings, extend (about 15 names, one
    each); every one resolves, and the reader returns the typed document."""
    import harness
    from harness.findings.schema import FindingsDocument

    assert len(harness.__all__) <= 16 and set(harness.__all__) - {"__version__"} == set(harness._PUBLIC)
    assert not {"load_document", "load_findings", "ClaimSession", "generate"} & set(harness.__all__)
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name
    doc = harness.read_findings(os.path.join(ROOT, "fixtures", "findings_v1_8d19a05.json"))
    assert isinstance(doc, FindingsDocument) and doc.claims[9].claim.id == "sanity_identity_patch_equivalent_to_no_patch"
    assert doc.claims[9].verdict == "supported"
