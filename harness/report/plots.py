"""PNG plots rendered from result documents (never from live objects), with matplotlib's Agg backend."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from harness.core.outputs import PendingFiles
from harness.core.results import atomic_write, result_bytes


def _plain_text(draw):
    """Run a plotting function with mathtext off: labels hold document text (claim heads, metric
    and model names), and a ``$`` in it must be drawn, not parsed (a bad formula would raise)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


def _save(fig: Any, path: str, dpi: int, pending: PendingFiles | None = None) -> None:
    """PNG to ``path`` atomically (an interrupted run leaves no half-drawn plot), or into
    ``pending`` (put in place with the run's other outputs), then close."""
    import matplotlib.pyplot as plt

    try:
        (pending.write if pending is not None else atomic_write)(
            path, lambda fh: fig.savefig(fh, format="png", dpi=dpi)
        )
    finally:
        plt.close(fig)


@_plain_text
def head_effect_plot(doc: dict, path: str) -> str:
    """Bar chart of Δ (patched − baseline) per metric with its 95% bootstrap CI over prompts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["summary"]
    names = [r["metric"] for r in rows]
    deltas = [r["delta"] for r in rows]
    low = [r["delta"] - r["ci_low"] for r in rows]
    high = [r["ci_high"] - r["delta"] for r in rows]
    s = doc["settings"]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.6))
    ax.barh(names, deltas, xerr=[low, high], color="#4C72B0", ecolor="black", capsize=3)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("Δ patched − baseline (mean over prompts, 95% bootstrap CI)")
    ax.set_title(
        f"{s['model']} heads {s['head_spec']} · {s['patch_mode']} · {s['emotion']} → "
        f"{s['run']['target']} (n={s['n_prompts']})",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return path


def forest_figure(result: dict) -> Any:
    """One claim's effect with its 95% CI against the random-head effects (if any); for an
    equivalence claim also the interval that decides it (TOST's (1 − 2α) interval, 90% at
    α = 0.05) against the margin. Returns the matplotlib figure (:func:`forest_png` draws it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e, c = result["effect"], result["claim"]
    fig, ax = plt.subplots(figsize=(5.5, 1.6))
    # the interval drawn from its ends, not as errors around the mean: a BCa interval need not hold the mean
    ax.plot([e["ci_low"], e["ci_high"]], [0, 0], color="#C44E52", marker="|", markersize=10, label="95% CI")
    ax.plot([e["mean"]], [0], "o", color="#C44E52", label=f"heads {c['heads']}")
    rc = result.get("random_control")
    if rc:
        ax.scatter(
            rc["null"],
            [0.4] * len(rc["null"]),
            marker="|",
            s=200,
            color="#4C72B0",
            label=f"{len(rc['null'])} random heads",
        )
    q = result.get("equivalence") or {}
    if c.get("margin"):
        ax.axvspan(-c["margin"], c["margin"], color="#55A868", alpha=0.15, label="equivalence margin")
    if q.get("ci_low") is not None and q.get("ci_high") is not None:
        level = q.get("confidence") or 1 - 2 * float(c.get("alpha") or 0.05)
        ax.plot(
            [q["ci_low"], q["ci_high"]],
            [-0.3, -0.3],
            color="#2E7D32",
            marker="|",
            markersize=10,
            lw=2.5,
            label=f"{level:.0%} TOST interval (decides)",
        )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks([])
    ax.set_ylim(-0.6, 0.9)
    ax.set_xlabel(f"Δ {c['metric']} over prompts", fontsize=8)
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    fig.tight_layout()
    return fig


@_plain_text
def forest_png(result: dict) -> bytes:
    """:func:`forest_figure` as PNG bytes."""
    import io

    import matplotlib.pyplot as plt

    fig = forest_figure(result)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def head_heatmap(
    results: list[dict], n_layers: int, n_heads: int, title: str, path: str, pending: PendingFiles | None = None
) -> str:
    """Layer × head grid of single-head claim effects (blank where no claim tested a head).

    Only directional claims from an emotion source count (identity and equivalence claims
    would paint a 0 that is not a head effect); the first claim per head wins.
    """
    import numpy as np

    grid = np.full((n_layers, n_heads), np.nan)
    for r in results:
        heads = r["claim"]["heads"]
        c = r["claim"]
        if (
            r.get("effect")
            and c.get("intervention") is None
            and not c.get("versus")
            and c["direction"] != "equivalent"
            and c["source"] != c["target"]
        ):
            layer, head = single_head(heads, n_layers, n_heads)
            if layer >= 0 and np.isnan(grid[layer, head]) and r["effect"].get("mean") is not None:
                grid[layer, head] = r["effect"]["mean"]
    return delta_heatmap(grid, title, path, pending=pending)


def single_head(spec: str, n_layers: int, n_heads: int) -> tuple[int, int]:
    """``"L:H"`` as (layer, head) when it names one head of this shape; (-1, -1) otherwise (a
    document's text, not trusted to be a valid head)."""
    layer, _, head = spec.partition(":")
    if layer.isascii() and layer.isdigit() and head.isascii() and head.isdigit():
        if int(layer) < n_layers and int(head) < n_heads:
            return int(layer), int(head)
    return -1, -1


@_plain_text
def delta_heatmap(
    grid: Any, title: str, path: str, label: str = "mean Δ over prompts", pending: PendingFiles | None = None
) -> str:
    """Layer × head heatmap of a dense [n_layers, n_heads] array of mean effects."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.asarray(grid, dtype=float)
    lim = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0
    lim = lim or 1.0  # an empty or all-zero grid still gets a readable scale
    fig, ax = plt.subplots(figsize=(0.45 * grid.shape[1] + 2, 0.25 * grid.shape[0] + 1.5))
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    _save(fig, path, 100, pending)
    return path


def document_with_heatmap(doc: dict, out: str, grid: Any, title: str, **kwargs: Any) -> str:
    """Write the result document ``out`` and its layer × head heatmap (``out`` with ``.png``)
    together: both in place, or (an error, Ctrl-C, SIGTERM) neither. Returns the PNG's path."""
    with PendingFiles() as pending:
        pending.write_bytes(out, result_bytes(doc, out))
        png = delta_heatmap(grid, title, out.rsplit(".", 1)[0] + ".png", pending=pending, **kwargs)
        pending.commit()
    return png


@_plain_text
def circuit_plot(doc: dict, path: str, pending: PendingFiles | None = None) -> str:
    """One PNG per ``causal-heads circuit`` document: DLA per generated position, the OV circuit's
    top tokens, or the attention mass per part of the context per generated position."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, analysis = doc["result"], doc["analysis"]
    title = f"{doc['model'].get('name', '?')} head {doc['head']} · {analysis} · {doc['emotion']}"
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    if analysis == "dla":
        steps = res["target_generated"]["per_step_mean"]
        ax.plot(range(len(steps)), steps, marker="o", ms=3, label=f"{doc['target']} prompts, generated positions")
        ax.axhline(
            res["source_final_position"]["mean"], color="#C44E52", ls="--", label="source prompts, final position"
        )
        ax.axhline(0, color="grey", lw=1)
        ax.set_xlabel("generated position (0 = final prompt position)")
        ax.set_ylabel("direct Δ log p(keywords), nats")
        ax.legend(fontsize=8)
    elif analysis == "ov":
        rows = res["source"]["top_tokens"][::-1]
        ax.barh([repr(r["token"]) for r in rows], [r["logit"] for r in rows], color="#4C72B0")
        ax.set_xlabel("mean centred OV logit over the source prompts' tokens")
        kw = res["source"]["keyword_mean_logit"], res["target"]["keyword_mean_logit"]
        ax.set_title(f"keyword tokens: {kw[0]:+.3f} (source tokens) vs {kw[1]:+.3f} (target tokens)", fontsize=8)
    else:
        for part, row in res["from_generated_positions"].items():
            ax.plot(range(len(row["per_step_mean"])), row["per_step_mean"], marker="o", ms=3, label=part)
        ax.set_xlabel("generated position (0 = final prompt position)")
        ax.set_ylabel("attention mass")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, 100, pending)
    return path


def document_with_plot(doc: dict, out: str, draw: Callable[..., str]) -> str:
    """Write ``doc`` to ``out`` and ``draw(doc, png, pending)``'s PNG beside it, both or neither."""
    with PendingFiles() as pending:
        pending.write_bytes(out, result_bytes(doc, out))
        png = draw(doc, out.rsplit(".", 1)[0] + ".png", pending=pending)
        pending.commit()
    return png


@_plain_text
def curve_plot(doc: dict, path: str, pending: PendingFiles | None = None) -> str:
    """A faithfulness curve document: F against the circuit's size per ablation, with 95% CIs,
    the empty circuit and the whole model as end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for mode, m in doc["ablations"].items():
        k = [p["size"] for p in m["points"]]
        f = [p["faithfulness"] for p in m["points"]]
        low = [p["faithfulness"] - p["ci_low"] for p in m["points"]]
        high = [p["ci_high"] - p["faithfulness"] for p in m["points"]]
        ax.errorbar(k, f, yerr=[low, high], marker="o", ms=4, capsize=3,
                    label=f"{mode} (CPR {m['cpr']:.3f}, CMD {m['cmd']:.3f}; empty {m['empty']:.2f})")  # fmt: skip
    ax.axhline(1.0, color="grey", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel(f"circuit size (top k of {doc['n_heads']} heads, ranked by {doc['rank_by']})")
    ax.set_ylabel("faithfulness (circuit effect / full model's)")
    ax.legend(fontsize=8)
    fig.suptitle(f"{doc['model'].get('name', '?')} · {doc['emotion']} vs {doc['target']}", fontsize=9)
    fig.tight_layout()
    _save(fig, path, 100, pending)
    return path
