"""Claims evaluated outside pytest (a notebook, a script): ``harness.evaluate(claims)``.

The same session, statistics, correction and findings document as a pytest run of the same
claims, so the numbers are identical::

    import harness

    findings = harness.evaluate(harness.load_claims("claims_mine.toml"), correction="holm")
    print(findings.markdown())
    findings.to_json("reports/findings.json")
    assert findings["my_claim"].supported, findings["my_claim"].explain()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from html import escape

from harness.claims.execute import Backend
from harness.claims.family import CORRECTIONS
from harness.claims.result import ClaimResult
from harness.claims.run_cache import RunCache
from harness.claims.session import ClaimSession
from harness.claims.spec import Claim
from harness.core.errors import UserError
from harness.core.results import atomic_write_text, write_result
from harness.findings.document import findings_document
from harness.report.html import STYLE, summary_table
from harness.report.markdown import render_markdown
from harness.report.text import verdict_tally


@dataclass
class Findings:
    """The typed findings of one run: a :class:`ClaimResult` per claim (in claim order) and the
    versioned findings document they make, with its renderers."""

    results: list[ClaimResult]
    document: dict

    def __getitem__(self, claim_id: str) -> ClaimResult:
        for r in self.results:
            if r.claim.id == claim_id:
                return r
        raise KeyError(claim_id)

    def __iter__(self) -> Iterator[ClaimResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def to_json(self, path: str) -> None:
        """Write the findings document (atomically; NaN as null), readable by every reader."""
        write_result(self.document, path)

    def markdown(self) -> str:
        """The seed-style markdown report (:mod:`harness.report.markdown`)."""
        return render_markdown(self.document, self.document["claims"])

    def html(self) -> str:
        """A self-contained page: the verdict tally and the summary table, one row per claim."""
        title = "causal-heads findings"
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>{STYLE}</head><body>"
            f"<h1>{title}</h1><p>{escape(verdict_tally(self.document['claims']))} "
            f"({escape(self.document['correction'])} correction)</p>"
            f"{summary_table(self.document['claims'])}</body></html>\n"
        )

    def to_markdown(self, path: str) -> None:
        atomic_write_text(path, self.markdown())

    def to_html(self, path: str) -> None:
        atomic_write_text(path, self.html())


def evaluate(
    claims: Iterable[Claim],
    *,
    correction: str = "holm",
    model_paths: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int | str | None = None,
    backend: Backend | None = None,
    cache: bool = True,
) -> Findings:
    """Evaluate ``claims`` as one family (p-values corrected across all of them) and return the
    :class:`Findings`. ``model_paths`` maps a model name to a weights directory (as
    ``--model NAME=PATH``); ``progress`` gets one line per generated group and evaluated claim;
    ``device``, ``dtype``, ``batch_size`` and ``backend`` place the runs as the plugin's
    ``--device``, ``--dtype``, ``--batch-size`` and ``--backend`` do; ``cache=False`` generates every
    run instead of reading the run cache (:mod:`harness.claims.run_cache`), as ``--no-cache``."""
    claims = list(claims)
    if correction not in CORRECTIONS:
        raise UserError(f"correction {correction!r}: must be one of {', '.join(CORRECTIONS)}")
    bad = [c for c in claims if not isinstance(c, Claim)]
    if bad:
        raise UserError(f"evaluate() takes Claim objects; got {type(bad[0]).__name__}: {bad[0]!r}")
    ids = [c.id for c in claims]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise UserError(f"claim id {twice[0]!r} appears more than once: ids must be unique in one run")
    session = ClaimSession(
        claims,
        model_paths=model_paths,
        correction=correction,
        progress=progress,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        backend=backend,
        cache=RunCache.default() if cache else None,
    )
    by_id = session.results()
    results = [by_id[c.id] for c in claims]
    doc = findings_document(
        [r.to_dict() for r in results],
        correction=correction,
        models=session.provenance(),
        data_files=session.data_files,
    )
    return Findings(results, doc)
