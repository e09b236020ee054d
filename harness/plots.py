"""PNG plots rendered from result documents (never from live objects), with matplotlib's Agg backend."""

from __future__ import annotations

import os


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
    ax.set_title(f"{s['model']} heads {s['head_spec']} · {s['patch_mode']} · {s['emotion']} → "
                 f"{s['run']['target']} (n={s['n_prompts']})", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
