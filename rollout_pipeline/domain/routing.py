"""Routing records: which variant of a model gets what share of traffic, and who shadows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

ROLES = ("stable", "candidate", "inactive", "retired")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidName(ValueError):
    """A model or variant name that is not allowed."""


def validate_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid model/variant name, else raise InvalidName saying why.

    Names are 1-64 characters of letters, digits, '.', '_' and '-', starting with a
    letter or digit: they appear in Dagster partition keys, file names and URLs.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InvalidName(
            f"invalid {kind} name {shown}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class VariantRoute:
    """One variant's place in a model's routing."""

    variant: str
    role: str
    traffic_percent: float
    shadow: bool = False
    inactive_since: dt.date | None = None


@dataclass(frozen=True)
class RoutingConfig:
    """A model's routing at one version: the shares of its variants always sum to 100."""

    model_name: str
    version: int
    routes: tuple[VariantRoute, ...]

    def by_role(self, role: str) -> VariantRoute | None:
        """The first route with ``role``, if any."""
        return next((r for r in self.routes if r.role == role), None)

    @property
    def stable(self) -> VariantRoute | None:
        return self.by_role("stable")

    @property
    def candidate(self) -> VariantRoute | None:
        return self.by_role("candidate")

    def route(self, variant: str) -> VariantRoute | None:
        return next((r for r in self.routes if r.variant == variant), None)


def check_routes(model_name: str, routes: tuple[VariantRoute, ...] | list[VariantRoute]) -> None:
    """Raise ValueError unless the routes form a valid routing for ``model_name``."""
    validate_name("model", model_name)
    seen = set()
    for r in routes:
        validate_name("variant", r.variant)
        if r.variant in seen:
            raise ValueError(f"{model_name}: variant {r.variant!r} appears twice")
        seen.add(r.variant)
        if r.role not in ROLES:
            raise ValueError(f"{model_name}/{r.variant}: unknown role {r.role!r} (one of {', '.join(ROLES)})")
        if not 0 <= r.traffic_percent <= 100:
            raise ValueError(f"{model_name}/{r.variant}: traffic {r.traffic_percent}% outside 0..100")
        if r.role in ("inactive", "retired") and (r.traffic_percent or r.shadow and r.role == "retired"):
            raise ValueError(f"{model_name}/{r.variant}: a {r.role} variant gets no traffic")
    total = sum(r.traffic_percent for r in routes)
    if routes and abs(total - 100) > 1e-9:
        raise ValueError(f"{model_name}: traffic shares sum to {total}%, not 100%")
    if sum(1 for r in routes if r.role == "stable") > 1:
        raise ValueError(f"{model_name}: more than one stable variant")
