"""A day check's result as a plain record: what each rule asked, what it found, and the check's outcome.

The Great Expectations suites (``validation.suites``) return these, and so does the
latency check that shows the judge's gates (``day_checks``); the evidence stores them
(``store.evidence``) and the decision and the review read them back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExpectationOutcome:
    """One rule's result: passed, failed (data) or errored (the check itself broke)."""

    expectation: str
    description: str
    success: bool
    errored: bool
    observed: str
    not_judged: bool = False  # too little data to tell: not a pass, not a failure

    @property
    def status(self) -> str:
        if self.errored:
            return "error"
        return "pass" if self.success else ("not judged" if self.not_judged else "fail")


@dataclass(frozen=True)
class SuiteResult:
    """A check's outcomes (a GX suite's, or the latency gates'); ``blocking`` ones stop the decision when they
    do not pass."""

    name: str
    blocking: bool
    outcomes: tuple[ExpectationOutcome, ...]

    @property
    def passed(self) -> bool:
        """Every expectation passed; an expectation not judged (too little data) is no pass."""
        return all(o.success and not o.errored for o in self.outcomes)

    @property
    def errored(self) -> bool:
        return any(o.errored for o in self.outcomes)

    @property
    def failures(self) -> list[str]:
        """What failed or errored, in words (an expectation not judged is listed by :attr:`not_judged`)."""
        return [f"{self.name}: {o.description} ({'ERROR: ' if o.errored else ''}{o.observed})"
                for o in self.outcomes if o.status in ("fail", "error")]

    @property
    def not_judged(self) -> list[str]:
        """Expectations with too little data to tell, and why."""
        return [f"{self.name}: {o.description} ({o.observed})" for o in self.outcomes if o.status == "not judged"]

    @property
    def outcome(self) -> str:
        """passed | failed | not judged (a failure or an error wins over too little data)."""
        if self.failures:
            return "failed"
        return "not judged" if self.not_judged else "passed"

    def summary(self) -> str:
        """One line naming the counts, e.g. "1 of 2 not judged: ..." or "all 6 passed"."""
        n = len(self.outcomes)
        if not n:
            return "nothing to check on this day"
        if self.failures:
            return f"{len(self.failures)} of {n} failed: " + "; ".join(self.failures)
        if self.not_judged:
            return f"{len(self.not_judged)} of {n} not judged: " + "; ".join(self.not_judged)
        return f"all {n} passed"
