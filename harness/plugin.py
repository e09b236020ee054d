"""Our pytest plugin: claims options, one shared ClaimSession, results on each test report.

Laid out like pytest-html: options in a named group, state in ``config.stash`` (never
private attributes), results attached to each test's report as ``user_properties``
(``("claim_result", dict)``), and the findings document written once per run (by the
controller, not xdist workers) to ``--findings`` (default ``reports/findings.json``).

Options: ``--model NAME`` (only claims for that model) or ``--model NAME=PATH`` (run NAME's
claims on the weights at PATH, e.g. a local GPT-2 directory), ``--claims FILE``,
``--profile NAME`` (a profile of ``harness/profiles.toml`` sets every claim's generation
settings), ``--n-prompts``, ``--samples``, ``--seed`` (override every claim's value, and the
profile's), ``--random-heads K`` (every claim that has a random-head control uses K),
``--correction holm|bh``, ``--device cpu`` (the only device this version supports),
``--findings PATH``.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest

from harness.errors import UserError

SESSION_KEY = pytest.StashKey["object"]()
RESULTS_KEY = pytest.StashKey[dict]()
FINDINGS_SCHEMA, FINDINGS_VERSION = "causal-heads/findings", 1


def pytest_addoption(parser) -> None:
    group = parser.getgroup("causal-heads", "causal hypothesis tests for attention heads")
    group.addoption("--model", action="append", default=[], metavar="NAME[=PATH]",
                    help="run only NAME's claims; NAME=PATH runs them on the weights at PATH (repeatable)")
    group.addoption("--claims", action="append", default=[], metavar="FILE",
                    help="claims TOML file (repeatable; default causal_tests/claims.toml and, when "
                         "present, causal_tests/sweep_claims.toml)")
    group.addoption("--profile", default=None, metavar="NAME",
                    help="apply a settings profile of harness/profiles.toml (sampling, samples, n_prompts, "
                         "max_tokens, alignment, seed, target) to every claim")
    group.addoption("--n-prompts", type=int, default=None, help="override every claim's n_prompts")
    group.addoption("--samples", type=int, default=None, help="override every claim's samples")
    group.addoption("--seed", type=int, default=None, help="override every claim's seed")
    group.addoption("--random-heads", type=int, default=None, metavar="K",
                    help="K random heads for every claim that has a random-head control (claims without one "
                         "keep none); with K >= 19 the control's empirical p can reach 0.05")
    group.addoption("--correction", default="holm", choices=("holm", "bh"), help="multiple-comparison correction")
    group.addoption("--device", default="cpu", help="torch device; this version runs on cpu only")
    group.addoption("--findings", default=os.path.join("reports", "findings.json"),
                    help="versioned JSON of every claim result (written once per run)")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "claim: a causal claim test generated from the claims file")
    if config.getoption("--device") != "cpu":
        raise pytest.UsageError(f"--device {config.getoption('--device')!r}: this version runs on cpu only")
    config.stash[RESULTS_KEY] = {}
    if config.pluginmanager.hasplugin("html"):
        from harness import html_report

        config.pluginmanager.register(html_report, "causal-heads-html")


def model_filter(config) -> tuple[set[str], dict[str, str]]:
    names, paths = set(), {}
    for item in config.getoption("--model") or []:
        name, sep, path = item.partition("=")
        names.add(name)
        if sep:
            if not os.path.isdir(path):
                raise pytest.UsageError(f"--model {item!r}: {path!r} is not a directory")
            paths[name] = path
    return names, paths


def claim_overrides(config) -> tuple[dict, str]:
    """Settings every claim takes from ``--profile`` then ``--n-prompts/--samples/--seed`` (flags
    win), and the options that set them, for error messages."""
    from harness.config import profile_claim_settings

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


def rerun_options(config, paths: dict[str, str]) -> str:
    """The run's options a rerun of one claim needs besides the claim's own values."""
    opts = [f"--model {name}={path}" for name, path in sorted(paths.items())]
    if config.getoption("--profile") is not None:
        opts.append(f"--profile {config.getoption('--profile')}")
    if config.getoption("--random-heads") is not None:
        opts.append(f"--random-heads {config.getoption('--random-heads')}")
    return " ".join(opts)


def claim_params(config) -> list:
    """One ``pytest.param`` per claim of the ``--claims`` files that this run selects (``--model``),
    with the run's overrides applied, marked ``claim`` (and ``slow`` unless ``tier = "fast"``),
    skipped with the reason when the model's weights are absent. Raises :class:`UserError` or
    ``pytest.UsageError`` naming the option, claim, field and value."""
    from harness.claims import load_claim_files, with_overrides
    from harness.models import weights_absent

    claims = load_claim_files(config.getoption("--claims") or None)
    names, paths = model_filter(config)
    overrides, origin = claim_overrides(config)
    unknown = sorted(names - {c.model for c in claims})
    if unknown:
        from harness.results import repo_path

        files = ", ".join(sorted({repo_path(c.file) for c in claims}))
        raise UserError(f"--model {unknown[0]!r}: no claim in {files} is about it; models with claims: "
                        + ", ".join(sorted({c.model for c in claims})))
    k = config.getoption("--random-heads")
    params = []
    for c in claims:
        if names and c.model not in names:
            continue
        c = with_overrides(c, origin, **overrides)
        if k is not None and c.random_heads:  # only claims that have a control: it sets its size
            c = with_overrides(c, f"--random-heads {k}", random_heads=k)
        marks = [pytest.mark.claim] + ([] if c.tier == "fast" else [pytest.mark.slow])
        reason = None if c.model in paths else weights_absent(c.model)
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(c, marks=marks, id=c.test_id))
    return params


def claim_session(config, claims):
    """The run's one ClaimSession over the collected claims (created on first use)."""
    from harness.claim_runner import ClaimSession

    if SESSION_KEY not in config.stash:
        _, paths = model_filter(config)
        config.stash[SESSION_KEY] = ClaimSession(claims, model_paths=paths,
                                                 correction=config.getoption("--correction"),
                                                 rerun_options=rerun_options(config, paths),
                                                 progress=lambda line: live_line(config, line))
    return config.stash[SESSION_KEY]


def live_line(config, line: str) -> None:
    """Write a line to the terminal while a test runs (the first claim test evaluates them all,
    minutes per claim on a CPU), bypassing output capture as pytest's live logging does."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):
        return
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        reporter.write_line(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def record(config, item, result) -> None:
    data = result.to_dict()
    config.stash[RESULTS_KEY][result.claim.id] = data
    item.user_properties.append(("claim_result", data))


def pytest_sessionfinish(session, exitstatus) -> None:
    config = session.config
    results = config.stash.get(RESULTS_KEY, {})
    if not results or hasattr(config, "workerinput"):
        return
    from harness.results import environment, write_result

    doc = {"schema": FINDINGS_SCHEMA, "schema_version": FINDINGS_VERSION,
           "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "correction": config.getoption("--correction"), "profile": config.getoption("--profile"),
           **environment(),
           "claims": list(results.values())}
    sess = config.stash.get(SESSION_KEY, None)
    if sess is not None:
        doc["models"] = {name: h.provenance() for name, h in sess._models.items()}
        doc["data_files"] = dict(sorted(sess.data_files.items()))
    try:
        write_result(doc, config.getoption("--findings"))
    except (UserError, OSError) as exc:
        config.get_terminal_writer().line(f"could not write findings: {exc}", red=True)
