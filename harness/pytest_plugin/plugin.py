"""Our pytest plugin: claim files collected as tests, one shared ClaimSession, findings written once.

Installed with the package (entry point ``pytest11``: ``causal_heads``), so it works in any
repository. Claim files are collected directly: ``pytest my_claims.toml`` or a folder holding
files named ``claims*.toml`` / ``*_claims.toml``; each claim is one test item named by its
``test_id`` (``pytest -k head_1_10`` selects the claims about head 1:10). ``--claims FILE``
(repeatable) runs exactly those files instead of the ones found. Paths on the command line are
the user's (resolved from the invocation directory), never the package's install location.

Laid out like pytest-html: options in a named group, the run's state one typed object registered
with pytest (:class:`harness.pytest_plugin.state.ClaimsRun`), results attached to each test's report as ``user_properties``
(``("claim_result", dict)``), and the findings document written once per run (by the
controller, not xdist workers) to ``--findings`` (default ``reports/findings.json``).

Options: ``--model NAME`` (only claims for that model) or ``--model NAME=PATH`` (run NAME's
claims on the weights at PATH, e.g. a local GPT-2 directory), ``--claims FILE``,
``--profile NAME`` (a profile of ``harness/run/profiles.toml`` sets every claim's generation
settings), ``--n-prompts``, ``--samples``, ``--seed`` (override every claim's value, and the
profile's), ``--random-heads K`` (every claim that has a random-head control uses K),
``--correction holm|bh``, ``--device cpu|cuda|cuda:N|auto``, ``--dtype float32|bfloat16|float16``,
``--batch-size N|auto``, ``--backend local|ray`` (with ``--ray-address``, ``--workers``),
``--findings PATH``.

Torch and the models are imported only when a claim file is collected (through the lazy
public names of :mod:`harness`), so the plugin costs other test suites nothing.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import harness
from harness.core.errors import UserError
from harness.core.limits import MAX_RANDOM_HEADS
from harness.core.outputs import restore_sigterm, terminate_as_interrupt
from harness.core.results import check_output_path, result_bytes
from harness.findings.document import findings_document
from harness.model.device import merged_placement, parse_memory
from harness.pytest_plugin.guards import (
    XDIST_REFUSAL,
    check_outputs,
    selection,
    selection_is_partial,
    skipped,
    under_xdist,
)
from harness.pytest_plugin.state import NAME, ClaimsRun, claims_run
from harness.run.profiles import profile_claim_settings, profile_placement

if TYPE_CHECKING:  # the plugin starts without torch
    from harness.claims.result import ClaimResult
    from harness.claims.spec import Claim

FINDINGS_DEFAULT = os.path.join("reports", "findings.json")
CLAIM_FILE = re.compile(r"^(claims[^/]*|[^/]*_claims)\.toml$")  # claims.toml, claims_tiny.toml, sweep_claims.toml
MARKED_CLAIM: pytest.StashKey[Claim] = pytest.StashKey()  # a test function's prepared claim (from its claim mark)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("causal-heads", "causal hypothesis tests for attention heads")
    group.addoption(
        "--model",
        action="append",
        default=[],
        metavar="NAME[=PATH]",
        help="run only NAME's claims; NAME=PATH runs them on the weights at PATH (repeatable)",
    )
    group.addoption(
        "--claims",
        action="append",
        default=[],
        metavar="FILE",
        help="claims TOML file to run instead of the claim files found (repeatable)",
    )
    group.addoption(
        "--profile",
        default=None,
        metavar="NAME",
        help="apply a settings profile of harness/run/profiles.toml (sampling, samples, n_prompts, "
        "max_tokens, alignment, seed, target) to every claim",
    )
    group.addoption("--n-prompts", type=int, default=None, help="override every claim's n_prompts")
    group.addoption("--samples", type=int, default=None, help="override every claim's samples")
    group.addoption("--seed", type=int, default=None, help="override every claim's seed")
    group.addoption(
        "--random-heads",
        type=int,
        default=None,
        metavar="K",
        help="K random heads for every claim that has a random-head control (claims without one "
        "keep none); with K >= 19 the control's empirical p can reach 0.05",
    )
    group.addoption("--correction", default="holm", choices=("holm", "bh"), help="multiple-comparison correction")
    group.addoption("--device", default=None, help="cpu (default), cuda, cuda:N or auto: where every model runs")
    group.addoption("--dtype", default=None, help="float32 (default), bfloat16 or float16: the models' precision")
    group.addoption("--batch-size", default=None, help="rows per forward pass: an integer or auto (default 128)")
    group.addoption(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help="memory budget that sizes the batches of runs, e.g. 4GB (default: half the machine's; "
        "the verdicts do not depend on it)",
    )
    group.addoption(
        "--backend",
        default="local",
        choices=("local", "ray"),
        help="where the runs are generated: this process (default) or Ray actors (pip install causal-heads[ray])",
    )
    group.addoption(
        "--arm-by-arm",
        action="store_true",
        help="generate every run on its own instead of planned (the layers below each patch computed once "
        "per group): slower, for checking that planning changes no finding (causal-heads regress)",
    )
    group.addoption("--ray-address", default=None, help="Ray cluster: auto or HOST:PORT (default: a local one)")
    group.addoption("--workers", type=int, default=None, help="Ray actors, each holding the model (default 2)")
    group.addoption("--no-cache", action="store_true", help="generate every run, not reading the run cache")
    group.addoption(
        "--findings",
        default=FINDINGS_DEFAULT,
        help="versioned JSON of every claim result (written once per run)",
    )
    group.addoption(
        "--force-outputs",
        action="store_true",
        help="let --findings / --html replace an existing file of another kind (refused otherwise)",
    )
    parser.addini(
        "causal_heads_prompts",
        "folder of the project's prompt sets and keyword lists, relative to the rootdir "
        "(default: the shipped ones; $CAUSAL_HEADS_PROMPTS wins)",
        default="",
    )


def _use_prompt_folder(config: pytest.Config) -> None:
    """The ini option ``causal_heads_prompts`` (relative to the rootdir) names the project's own prompt
    folder, unless ``$CAUSAL_HEADS_PROMPTS`` already does; undone when the run ends."""
    folder = config.getini("causal_heads_prompts")
    if not folder or os.environ.get("CAUSAL_HEADS_PROMPTS"):
        return
    os.environ["CAUSAL_HEADS_PROMPTS"] = str(config.rootpath / folder)

    def unset() -> None:
        os.environ.pop("CAUSAL_HEADS_PROMPTS", None)

    config.add_cleanup(unset)


@pytest.hookimpl(tryfirst=True)  # before pytest-html's: it reads --html when it makes its report object
def pytest_configure(config: pytest.Config) -> None:
    _use_prompt_folder(config)
    config.addinivalue_line(
        "markers",
        "claim(Claim(...)): a causal claim: a claim file's test, or a test function that takes claim_result",
    )
    config.addinivalue_line("markers", "slow: a claim that needs minutes of CPU (tier = slow)")
    run = ClaimsRun(placement=_placement(config))  # bad values stop the run here, before any work
    findings = config.getoption("--findings")
    if findings != FINDINGS_DEFAULT:  # a location the user chose is checked before any claim runs
        try:
            check_output_path(findings, "--findings")
        except UserError as exc:
            pytest.exit(str(exc), returncode=2)
    config.pluginmanager.register(run, NAME)
    if config.pluginmanager.hasplugin("html"):
        config.pluginmanager.import_plugin("harness.pytest_plugin.html")
        html = config.pluginmanager.get_plugin("harness.pytest_plugin.html")
        assert html is not None  # imported just above
        html.stage_report(config, run)


def _placement(config: pytest.Config) -> dict:
    """--device/--dtype/--batch-size (over the --profile's), and the backend: checked at once."""
    try:
        k = config.getoption("--random-heads")
        if k is not None and not 0 <= k <= MAX_RANDOM_HEADS:  # checked even when no claim has a control
            raise UserError(f"--random-heads {k}: must be in [0, {MAX_RANDOM_HEADS}]")
        flags = {key: config.getoption("--" + key.replace("_", "-")) for key in ("device", "dtype", "batch_size")}
        out = merged_placement(flags, profile_placement(config.getoption("--profile")))
        out["max_memory"] = parse_memory(config.getoption("--max-memory"))
        backend = config.getoption("--backend")
        if config.getoption("--arm-by-arm"):
            if backend != "local":
                raise UserError("--arm-by-arm generates every run in this process: it cannot take --backend ray")
            out["planned"] = False
        if backend == "ray":  # (harness.RayBackend is imported on this first use: torch comes with it)
            out["backend"] = harness.RayBackend.from_options(
                config.getoption("--ray-address"), config.getoption("--workers")
            )
        elif config.getoption("--ray-address") or config.getoption("--workers") is not None:
            raise UserError("--ray-address and --workers need --backend ray")
        return out
    except UserError as exc:  # one line and exit 2, as every command answers bad input
        pytest.exit(str(exc), returncode=2)


def model_filter(config: pytest.Config) -> tuple[set[str], dict[str, str]]:
    names, paths = set(), {}
    for item in config.getoption("--model") or []:
        name, sep, path = item.partition("=")
        names.add(name)
        if sep:
            if not os.path.isdir(path):
                raise pytest.UsageError(f"--model {item!r}: {path!r} is not a directory")
            paths[name] = path
    return names, paths


def claim_overrides(config: pytest.Config) -> tuple[dict, str]:
    """Settings every claim takes from ``--profile`` then ``--n-prompts/--samples/--seed`` (flags
    win), and the options that set them, for error messages."""

    values, origin = {}, []
    profile = config.getoption("--profile")
    if profile is not None:
        values.update(profile_claim_settings(profile))
        origin.append(f"--profile {profile}")
    for key in ("n_prompts", "samples", "seed"):
        option = "--" + key.replace("_", "-")
        if config.getoption(option) is not None:
            values[key] = config.getoption(option)
            origin.append(f"{option} {values[key]}")
    return values, " ".join(origin)


def rerun_options(config: pytest.Config, paths: dict[str, str]) -> str:
    """The run's options a rerun of one claim needs besides the claim's own values."""
    opts = [f"--model {name}={path}" for name, path in sorted(paths.items())]
    if config.getoption("--profile") is not None:
        opts.append(f"--profile {config.getoption('--profile')}")
    if config.getoption("--random-heads") is not None:
        opts.append(f"--random-heads {config.getoption('--random-heads')}")
    return " ".join(opts)


def claim_files(config: pytest.Config) -> list[str]:
    """``--claims`` files, resolved from the directory pytest was invoked in."""
    base = config.invocation_params.dir
    given = config.known_args_namespace.claims  # parsed early, so pytest_load_initial_conftests sees them
    return [str((base / p).resolve()) for p in given or []]


def prepare_claim(config, c):
    """``(claim, marks)`` for a claim this run selects (``--model``): the run's overrides applied
    and validated again, marked ``claim`` (and ``slow`` unless ``tier = "fast"``), skipped with the
    reason when the model's weights are absent; ``None`` for a claim about another model."""
    names, paths_by_model = model_filter(config)
    if names and c.model not in names:
        return None
    overrides, origin = claim_overrides(config)
    c = harness.with_overrides(c, origin, **overrides)
    k = config.getoption("--random-heads")
    if k is not None and c.random_heads:  # only claims that have a control: it sets its size
        c = harness.with_overrides(c, f"--random-heads {k}", random_heads=k)
    marks = [pytest.mark.claim] + ([] if c.tier == "fast" else [pytest.mark.slow])
    try:
        reason = None if c.model in paths_by_model else harness.weights_absent(c.model)
    except UserError as exc:  # a misspelt model is an error, not a claim skipped for absent weights
        raise UserError(f"{c.file}: claim {c.id!r}: field 'model' = {c.model!r}: {exc}") from None
    if reason:
        marks.append(pytest.mark.skip(reason=reason))
    else:  # heads and hook points against the model's config: before any model loads or claim generates
        problem = harness.shape_problem(c, paths_by_model.get(c.model))
        if problem:
            field, value, why = problem
            raise UserError(f"{c.file}: claim {c.id!r}: field {field!r} = {value!r}: {why}")
    return c, marks


def claim_params(config: pytest.Config, paths: list[str] | None = None) -> list:
    """One ``pytest.param`` per claim of ``paths`` (default: the ``--claims`` files) that this run
    selects (see :func:`prepare_claim`). Raises :class:`UserError` or ``pytest.UsageError``
    naming the option, claim, field and value."""
    claims = harness.load_claim_files(paths if paths is not None else claim_files(config))
    run = config.pluginmanager.get_plugin(NAME)
    if isinstance(run, ClaimsRun):
        run.models_seen.update(c.model for c in claims)
    params = []
    for c in claims:
        prepared = prepare_claim(config, c)
        if prepared is not None:
            claim, marks = prepared
            params.append(pytest.param(claim, marks=marks, id=claim.test_id))
    return params


def item_claim(item):
    """The claim an item tests: a claim file's item, or a test marked ``@pytest.mark.claim(...)``."""
    return item.claim if isinstance(item, ClaimItem) else item.stash.get(MARKED_CLAIM, None)


def runnable_claims(items: list[pytest.Item]) -> list:
    """The claims of ``items`` that can run (a ``skip`` mark or a true ``skipif`` leaves a claim out)."""
    return [c for i in items if (c := item_claim(i)) is not None and not skipped(i)]


def run_family(session: pytest.Session) -> list:
    """The claims of this run's selected, runnable items: the claims it evaluates."""
    return runnable_claims(session.items)


def not_selected(config: pytest.Config, session: pytest.Session) -> list[str]:
    """The family's claims this run's selection (-k, -m, --lf) left out."""
    chosen = {c.id for c in run_family(session)}
    return [cid for cid in claims_run(config).family if cid not in chosen]


def evaluated(item):
    """The claim's result, evaluated with the whole family on first use, recorded for the findings."""
    if under_xdist(item.config):  # before any model is loaded
        pytest.fail(XDIST_REFUSAL, pytrace=False)
    claim = item_claim(item)
    result = claim_session(item.config, run_family(item.session)).results()[claim.id]
    record(item.config, item, result)
    return result


class ClaimItem(pytest.Item):
    """One claim as a test: it passes only when the statistics support the claim."""

    def __init__(self, *, claim: Claim, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim

    def runtest(self) -> None:
        result = evaluated(self)
        if result.error or result.verdict != "supported":
            pytest.fail(result.message(), pytrace=False)  # effect, CI, p raw/adjusted, n, seed, rerun command

    def reportinfo(self):
        return self.path, 0, f"claim {self.claim.id}"  # a line is needed: a skip mark reports the item's location


class ClaimFile(pytest.File):
    """A claims TOML file: one :class:`ClaimItem` per claim this run selects."""

    def collect(self):
        if under_xdist(self.config):  # a collection error: pytest stops before any test (exit 2)
            raise self.CollectError(XDIST_REFUSAL)
        try:  # bad claims files or options: one message naming the file, claim, field and value
            params, problem = claim_params(self.config, [str(self.path)]), None
        except (UserError, pytest.UsageError) as exc:
            problem = str(exc)
        if problem:  # outside the except block, so no chained traceback is shown
            raise self.CollectError(problem)
        for p in params:
            item = ClaimItem.from_parent(self, name=p.id, claim=p.values[0])
            for mark in p.marks:
                item.add_marker(mark)
            yield item


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``--claims FILE`` files are collected as if named on the command line (so a bad one is an
    ordinary collection error, and a missing one pytest's "file or directory not found")."""
    args.extend(claim_files(early_config))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ClaimFile | None:
    chosen = claim_files(parent.config)
    if (str(file_path) in chosen) if chosen else CLAIM_FILE.match(file_path.name):
        return ClaimFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give tests marked ``@pytest.mark.claim(Claim(...))`` their claims, then check the run's claims
    as one family: ids unique across files and tests, and every ``--model NAME`` about some claim."""
    other_models = [item for item in items if not mark_claim(config, item)]
    if other_models:  # as a claim file's claims about other models are not collected
        items[:] = [item for item in items if item not in other_models]
        config.hook.pytest_deselected(items=other_models)
    where: dict[str, str] = {}
    for item in items:
        claim = item_claim(item)
        if claim is None:
            continue
        here = str(item.path) if isinstance(item, ClaimItem) else item.nodeid
        other = where.setdefault(claim.id, here)
        if other != here:
            raise pytest.UsageError(f"{here}: claim {claim.id!r}: field 'id' = {claim.id!r} is also used in {other}")
    # the correction family: every runnable claim collected for the run's models, before pytest's
    # own -k / -m / --lf deselection (which runs after this hook)
    run = claims_run(config)
    run.family = [c.id for c in runnable_claims(items)]
    if run.family and not under_xdist(config):
        prepare_outputs(config, run, sorted({str(i.path) for i in items if isinstance(i, ClaimItem)}))
    names, _ = model_filter(config)
    seen = claims_run(config).models_seen
    unknown = sorted(names - seen)
    if unknown and seen:
        raise pytest.UsageError(
            f"--model {unknown[0]!r}: no collected claim is about it; models with claims: " + ", ".join(sorted(seen))
        )


def prepare_outputs(config: pytest.Config, run: ClaimsRun, files: list[str]) -> None:
    """Before any claim runs: the outputs checked (:func:`harness.pytest_plugin.guards.check_outputs`;
    one line, exit 2) and SIGTERM made to end the session as Ctrl-C does (outputs decided,
    temporaries removed; only in runs with claims, restored when the run ends)."""
    try:
        check_outputs(config, config.getoption("--findings"), run.html_path, files)
    except UserError as exc:
        pytest.exit(str(exc), returncode=2)
    if terminate_as_interrupt():
        config.add_cleanup(restore_sigterm)


def mark_claim(config: pytest.Config, item: pytest.Item) -> bool:
    """For a test function: its ``claim`` mark's Claim (or a callable of the test's parameters that
    returns one), prepared like a file's claims; a mark without the ``claim_result`` fixture, or
    the fixture without a mark, is a usage error naming the test. False for a claim about a model
    this run does not select (``--model``): the item is dropped."""
    if isinstance(item, ClaimItem) or not isinstance(item, pytest.Function):
        return True
    mark = item.get_closest_marker("claim")
    wants = "claim_result" in getattr(item, "fixturenames", ())
    if mark is None or not mark.args:
        if wants:
            raise pytest.UsageError(
                f"{item.nodeid}: the claim_result fixture needs a @pytest.mark.claim(Claim(...)) on the test"
            )
        return True
    if not wants:
        raise pytest.UsageError(
            f"{item.nodeid}: marked with a claim but takes no claim_result fixture: add it to the test's arguments"
        )
    marked = [m for m in item.iter_markers("claim") if m.args]
    if len(marked) > 1 or len(mark.args) > 1 or mark.kwargs:
        raise pytest.UsageError(
            f"{item.nodeid}: @pytest.mark.claim takes exactly one Claim (or a function returning one); for "
            "several claims, parametrize the test with a function of its parameters"
        )
    try:
        spec = marked_claim(item, mark.args[0])
        claims_run(config).models_seen.add(spec.model)
        prepared = prepare_claim(config, spec)
    except UserError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    if prepared is None:
        return False
    claim, marks = prepared
    for m in marks:
        if m.name != "claim":
            item.add_marker(m)
    item.stash[MARKED_CLAIM] = claim
    item.extra_keyword_matches.add(claim.test_id)  # -k head_1_10 selects it as it does a file's claim
    return True


def marked_claim(item: pytest.Function, spec: Any) -> Claim:
    """The Claim of a mark: the Claim itself, or what a function of the test's parameters returns
    (its error, if it raises, named as a :class:`UserError`)."""
    if not isinstance(spec, harness.Claim) and callable(spec):
        params = item.callspec.params if hasattr(item, "callspec") else {}
        wanted = inspect.signature(spec).parameters
        try:
            spec = spec(**{k: params[k] for k in wanted if k in params})
        except UserError:
            raise
        except Exception as exc:  # the user's function: its error, named, never INTERNALERROR
            raise UserError(
                f"the claim function {getattr(spec, '__qualname__', spec)!r} raised "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
    if not isinstance(spec, harness.Claim):
        raise UserError(
            f"@pytest.mark.claim takes a Claim or a function of the test's parameters returning one; "
            f"got {type(spec).__name__}"
        )
    return spec


@pytest.fixture
def claim_result(request):
    """The typed result of the claim on this test's ``@pytest.mark.claim``: ``.supported``,
    ``.verdict``, ``.effect``, ``.p_raw``/``.p_adjusted``, ``.delta``, ``.generations``, ``.explain()``.
    Evaluated together with every other claim of the run (one correction, one findings document)."""
    return evaluated(request.node)


def claim_session(config, claims):
    """The run's one ClaimSession over the collected claims (created on first use)."""
    run = claims_run(config)
    if run.session is None:
        _, paths = model_filter(config)
        family = len(set(run.family) | {c.id for c in claims})
        run.session = harness.ClaimSession(
            claims,
            model_paths=paths,
            correction=config.getoption("--correction"),
            subset_of=family if family > len(claims) else None,
            rerun_options=rerun_options(config, paths),
            progress=lambda line: live_line(config, line),
            cache=None if config.getoption("--no-cache") else harness.RunCache.default(),
            **run.placement,
        )
    return run.session


def live_line(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal while a test runs (the first claim test evaluates them all,
    minutes per claim on a CPU), bypassing output capture as pytest's live logging does."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None or under_xdist(config):
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        reporter.write_line(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def record(config: pytest.Config, item: pytest.Item, result: ClaimResult) -> None:
    """The result's record, a copy of its own: a test body that edits ``claim_result`` (sorts its
    per-prompt values in place) cannot rewrite the evidence the findings hold."""
    data = copy.deepcopy(result.to_dict())
    claims_run(config).results[result.claim.id] = data
    item.user_properties.append(("claim_result", data))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    """Stage the findings (see :func:`pytest_unconfigure`, which puts them in place with the HTML)."""
    config = session.config
    run = claims_run(config)
    run.pytest_session = session
    if run.xdist_refused and not under_xdist(config):
        session.exitstatus = pytest.ExitCode.INTERRUPTED  # 2, as for the claim files' collection errors
    run.selected_claims = bool(run_family(session))
    if not run.results or under_xdist(config):
        return
    sess = run.session
    chosen = selection(config)
    # a run cut short (-x, --maxfail, Ctrl-C) says so: the claims it selected but did not record
    not_run = [c.id for c in run_family(session) if c.id not in run.results]
    doc = findings_document(
        list(run.results.values()),
        not_run=not_run,
        not_selected=not_selected(config, session),
        interrupted=exitstatus == pytest.ExitCode.INTERRUPTED,
        correction=config.getoption("--correction"),
        profile=config.getoption("--profile"),
        models=None if sess is None else sess.provenance(),
        data_files=None if sess is None else sess.data_files,
        selection=chosen,
        partial=selection_is_partial(chosen),
    )
    path = run.findings_path = partial_findings_path(config, config.getoption("--findings"), doc)
    try:
        run.pending.write_bytes(path, result_bytes(doc, path))
    except (UserError, OSError) as exc:
        run.selected_claims = False  # nothing of this run's outputs is put in place
        run.pending.discard()
        run.write_failed = f"could not write findings: --findings {path}: {exc}"
        config.get_terminal_writer().line(run.write_failed, red=True)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR  # never a green run without its findings


def partial_findings_path(config: pytest.Config, path: str, doc: dict) -> str:
    """Where this run's findings go: ``path``, unless the run evaluated a subset of its family and
    ``path`` holds a complete findings document, which is kept: then ``<stem>.partial.json``
    beside it (said on the terminal)."""
    if not doc.get("not_selected") or not os.path.isfile(path):
        return path
    try:
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
    except (OSError, ValueError):
        return path
    if not (isinstance(old, dict) and old.get("schema") == doc["schema"] and old.get("complete") is True):
        return path
    stem, ext = os.path.splitext(path)
    partial = f"{stem}.partial{ext}"
    config.get_terminal_writer().line(
        f"causal-heads: this run evaluated {len(doc['claims'])} of its family's "
        f"{len(doc['claims']) + len(doc['not_selected'])} claims; {path} holds a complete run and is kept: "
        f"findings written to {partial}"
    )
    return partial


def outputs_kept(config: pytest.Config, run: ClaimsRun) -> bool:
    """Whether the run's staged outputs go in place (see :func:`pytest_unconfigure`)."""
    return (run.findings_path or config.getoption("--findings")) in run.pending or not run.selected_claims


@pytest.hookimpl(wrapper=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> Any:
    """pytest-html's "Generated html report" line names the staged copy: it says where the report
    goes, or that it was not written (a claims run that recorded no findings keeps the old one)."""
    run = config.pluginmanager.get_plugin(NAME)
    if not isinstance(run, ClaimsRun) or run.html_path is None:
        return (yield)
    html_path, kept, original = run.html_path, outputs_kept(config, run), terminalreporter.write_sep

    def write_sep(sep: str, title: str | None = None, **kwargs: Any) -> Any:
        if title and title.startswith("Generated html report:"):
            title = (
                f"Generated html report: {Path(html_path).as_uri()}"
                if kept
                else f"causal-heads: no html report written ({run.write_failed or 'no claim was evaluated'}); "
                f"{html_path} left as it was"
            )
        return original(sep, title, **kwargs)

    terminalreporter.write_sep = write_sep
    try:
        return (yield)
    finally:
        del terminalreporter.write_sep  # the instance attribute: the class's method again


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest-html has written its report (staged, see :mod:`harness.pytest_plugin.html`):
    the findings and the HTML of a run go in place together, or neither does. A claims run that
    recorded no result (interrupted before the first claim was evaluated, a failed findings write)
    leaves the old findings and the old HTML as they were; a run without claims keeps pytest-html's
    usual behaviour."""
    run = config.pluginmanager.get_plugin(NAME)
    if not isinstance(run, ClaimsRun):  # the run stopped before the plugin was configured
        return
    if not outputs_kept(config, run):
        run.pending.discard()
        return
    try:
        run.pending.commit()
    except OSError as exc:  # the destination changed under the run (a folder now, a file removed)
        run.pending.discard()
        config.get_terminal_writer().line(f"could not put the findings in place: {exc}", red=True)
        if run.pytest_session is not None:
            run.pytest_session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
