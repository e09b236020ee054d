"""The claim's fields as a markdown table, generated from the :class:`~harness.claims.spec.Claim`
model (name, type, default) and :data:`FIELD_HELP`, so that docs/claims.md cannot drift from the code (tests/test_docs.py compares them).

    python -m harness.claims.field_table     # prints the table
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic_core import PydanticUndefined

from harness.claims.spec import Claim

BEGIN, END = (
    "<!-- claim-fields:begin (generated: python -m harness.claims.field_table) -->",
    "<!-- claim-fields:end -->",
)


# one line per field (the spec module's docstring has the long form); a field added to Claim
# without a line here fails tests/test_docs.py
FIELD_HELP = {
    "id": "unique; lowercase letters, digits and `_` (at most 100 characters)",
    "model": "a registered model, a Hugging Face id in the local cache, or a model directory",
    "kind": "`patch`; `path` (senders reach the output only through receivers); `circuit`",
    "heads": "head spec: `1:10`, `1:10,0:0`, `1:*` (the circuit, for circuit claims)",
    "senders": "path claims: the heads patched",
    "receivers": "path claims: later heads (`22:*,25:3`), `later`, `direct` (the logits), or a mix",
    "patch_mode": "`z`, `pattern_v`, `v_only`, `pattern_only`, `zero`, `mean`, `resample`, or a registered mode",
    "source": "the prompt set (an emotion) the patched activations come from",
    "metric": "a registered metric (`causal-heads metrics list`)",
    "direction": '`increase`, `decrease`, or `equivalent` ("this changes nothing": needs `margin`)',
    "target": "the prompt set patched into",
    "margin": "equivalence margin in metric units (TOST); required for `equivalent`",
    "alpha": "the test's level (an equivalence claim's TOST interval is 1 − 2·alpha)",
    "split": "`all` (the first n_prompts), `discovery` or `confirmation` (that split's first n_prompts)",
    "n_prompts": "prompt pairs (the unit resampled by every test)",
    "alignment": "which positions take the source values: `end`, `last`, `mean_source`",
    "random_heads": "K random heads of the same layers as a control (at most 1000)",
    "statistic": "`mean` (sign-flip test, bootstrap CI) or `sign` (exact sign test, median): decides the verdict",
    "versus": "a table overriding heads / patch_mode / source / receivers: the claim is about the difference",
    "intervention": "instead of patch_mode/source: a registered intervention, by name or as a table with "
    'its parameters, `{name = "steer", scale = 4}`',
    "intervention_params": "the intervention's parameters (written in the `intervention` table), passed to its "
    "function as keywords",
    "hook_points": 'where a non-per-head intervention acts, e.g. `["blocks.3.hook_resid_post"]`',
    "ablations": "test necessity under several ablations (`zero`, `mean`, `resample`): supported only under all",
    "criterion": "circuit claims: `faithful`, `minimal` or `complete`",
    "fraction": "circuit claims (faithful, increase): the share of the full model's effect the circuit must reach",
    "delta": "circuit claims (minimal): the faithfulness drop a removed head must cause",
    "subsets": "circuit claims (complete): random subsets K compared",
    "tier": "`fast` (per-commit suite) or `slow`",
    "description": "free text",
    "selected_on": "the sweep document whose prompts selected the heads (claims on those prompts are exploratory)",
    "do_sample": "sample (true) or greedy decoding (false)",
    "temperature": "sampling temperature (at least 1e-4)",
    "top_k": "top-k filter (0 = none)",
    "top_p": "nucleus filter (1.0 = none)",
    "samples": "generations per prompt (1 when greedy; at most 1000)",
    "max_tokens": "new tokens per generation (at most 4096)",
    "seed": "the seed of sampling and resampling (common random numbers for baseline and patched runs)",
}


def _type(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args) + " (optional)"
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def field_table() -> str:
    """The markdown table: one row per field of :class:`Claim`."""
    rows = ["| field | type | default | what |", "|---|---|---|---|"]
    for name, info in Claim.model_fields.items():
        default = "required" if info.default is PydanticUndefined else repr(info.default)
        what = FIELD_HELP.get(name, "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(info.annotation)} | {default} | {what} |")
    return "\n".join(rows)


def with_table(markdown: str) -> str:
    """``markdown`` with the text between :data:`BEGIN` and :data:`END` replaced by the table."""
    head, _, rest = markdown.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{field_table()}\n{END}{tail}"


if __name__ == "__main__":
    print(field_table())
