"""Per-municipality rules files (rules/<tenant>.yaml): schema, loading and `file:line` errors.

A rules file holds the tenant's teams, routing rules, transfer limit, calendar, service norms,
retention (`router.core.retention`), how its agents' sign-in maps onto teams and roles (`agents`) and,
optionally, the export to Open Klant (`router.core.openklant`) and how contacts of one resident are
linked (`residents`).
Files are validated at start-up; a bad file is refused with the file, the line and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from router.core.calendar.norms import NormTable
from router.core.calendar.terms import Term
from router.core.calendar.workdays import CalendarSpec
from router.core.openklant import OpenKlantConfig
from router.core.retention import Retention

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
OneOrMany = Annotated[list[str], Field(min_length=1)]


_WEEKDAYS = {day: "08:30-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Team(_Model):
    id: Identifier
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str | None = None


class ContactDetails(_Model):
    """How residents reach the municipality; used in texts that point them to the right channel."""

    phone: Annotated[str, StringConstraints(min_length=3, max_length=40)] | None = None
    form_url: Annotated[str, StringConstraints(pattern=r"^https://\S+$", max_length=500)] | None = None


class Conditions(_Model):
    """All given conditions must hold; within one condition any listed value is enough."""

    channel: OneOrMany | None = None
    category: OneOrMany | None = None
    # Whole words or phrases in subject or body, case- and accent-insensitive.
    keywords: OneOrMany | None = None
    sender_domain: OneOrMany | None = None
    metadata: dict[str, str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _single_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: _listify(v) if k in ("channel", "category", "keywords", "sender_domain") else v
                for k, v in data.items()
            }
        return data


class CallbackPolicy(_Model):
    """When a callback request ends without the resident reached: after `attempts` calls that did not reach
    them (no answer, wrong number), the request closes as `unreachable` and `then` says what follows: the
    team sends a letter, the resident gets an e-mail (a letter when there is no address), or nothing."""

    attempts: int = Field(ge=1, le=20)
    then: Literal["letter", "email", "close"]


# A group as the identity provider names it: a name, a path ("/kcc"), a GUID (Entra ID), a DN.
GroupName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


@dataclass(frozen=True)
class AgentAccess:
    """What a signed-in agent may do in the tenant: the teams they work for and their roles."""

    teams: frozenset[str]
    roles: frozenset[str]


class AgentMapping(_Model):
    """How the tenant's identity provider's groups become teams and roles (docs/workspace.md, "Sign-in").

    `claim` names the ID-token claim that lists the user's groups: a top-level claim (also one whose
    name holds dots, such as "https://gemeente.nl/groups"), else a dotted path into nested claims
    ("realm_access.roles"). A member of a group in `teams` works for that team (role `agent`); a member
    of a group in `supervisors` is a supervisor. Someone in none of these groups cannot sign in."""

    claim: Annotated[str, StringConstraints(min_length=1, max_length=200)] = "groups"
    teams: dict[GroupName, Identifier] = {}
    supervisors: list[GroupName] = []

    @model_validator(mode="after")
    def _some_group(self) -> AgentMapping:
        if not self.teams and not self.supervisors:
            raise ValueError("name at least one group under teams or supervisors, or nobody can sign in")
        return self

    def groups_in(self, claims: dict[str, Any]) -> frozenset[str]:
        """The user's groups from the token's claims; a claim that is no string or list of strings
        counts as no groups."""
        value: Any = claims.get(self.claim)
        if value is None and "." in self.claim:
            value = claims
            for part in self.claim.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            return frozenset({value})
        if isinstance(value, list):
            return frozenset(v for v in value if isinstance(v, str))
        return frozenset()

    def access(self, claims: dict[str, Any]) -> AgentAccess | None:
        """The teams and roles the claims give, or None when the user is in no mapped group."""
        groups = self.groups_in(claims)
        teams = frozenset(team for group, team in self.teams.items() if group in groups)
        roles: set[str] = set()
        if teams:
            roles.add("agent")
        if groups & set(self.supervisors):
            roles.add("supervisor")
        if not roles:
            return None
        return AgentAccess(teams, frozenset(roles))


class Residents(_Model):
    """One resident across channels (docs/architecture.md, "One resident across channels").

    `link_open_same_category`: a new contact of a resident (same e-mail address, phone number or social
    handle) on the same category as an open contact of theirs joins that contact as a follow-up.
    `related_months`: how far back both that link and the contact page's "other contacts of this
    resident" look."""

    link_open_same_category: bool = True
    related_months: int = Field(default=6, ge=1, le=120)


class Route(_Model):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    team: Identifier
    # The category a matching contact gets when it came without one.
    category: Identifier | None = None
    when: Conditions


class TenantRules(_Model):
    tenant: Identifier
    name: Annotated[str, StringConstraints(min_length=1)]
    teams: Annotated[list[Team], Field(min_length=1)]
    default_team: Identifier
    # Where a contact goes when it may not be transferred further ("wrong desk" past the limit).
    coordinating_team: Identifier
    transfer_limit: int = Field(ge=0, le=10)
    # Without one, a callback request stays open until it is reached or closed with a reason.
    callback_policy: CallbackPolicy | None = None
    contact_details: ContactDetails = ContactDetails()
    routes: list[Route] = []
    # Without a calendar: Mon–Fri 08:30–17:00 and the gemeente holidays.
    calendar: CalendarSpec = Field(
        default_factory=lambda: CalendarSpec.model_validate({"office_hours": _WEEKDAYS})
    )
    norms: NormTable = NormTable(())
    # How long closed contacts and dead letters are kept; without it 12 months and 30 days.
    retention: Retention = Retention()
    # The export of routed contacts and callback requests to the tenant's Open Klant (docs/openklant.md);
    # without it the tenant is not exported.
    openklant: OpenKlantConfig | None = None
    # Sign-in to the workspace with the tenant's identity provider; without it nobody of this tenant
    # can sign in there (the API's keys are unaffected).
    agents: AgentMapping | None = None
    # One resident across channels: linking to an open contact of the same resident, and how far back.
    residents: Residents = Residents()

    @model_validator(mode="after")
    def _teams_exist(self) -> TenantRules:
        ids = [t.id for t in self.teams]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"team ids must be unique; duplicated: {', '.join(dupes)}")
        known = set(ids)
        for field in ("default_team", "coordinating_team"):
            if getattr(self, field) not in known:
                raise ValueError(
                    f"{field} '{getattr(self, field)}' is not one of the teams ({', '.join(ids)})"
                )
        unknown = sorted(set(self.openklant.actors) - known) if self.openklant else []
        if unknown:
            raise ValueError(f"openklant.actors names teams that do not exist: {', '.join(unknown)}")
        return self

    def team_ids(self) -> list[str]:
        return [t.id for t in self.teams]

    def callback_term(self) -> Term | None:
        return self.norms.term_for(None, None, "callback")


@dataclass(frozen=True)
class RulesProblem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class RulesError(Exception):
    def __init__(self, problems: list[RulesProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedRules:
    rules: TenantRules
    file: str
    # Line of each route's mapping in the file, by index, for `rules explain`.
    route_lines: tuple[int, ...]
    default_line: int = 1


def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map each data path in a YAML document to its 1-based line."""
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            for sub, line in _line_index(value_node, (*path, key)).items():
                if sub != (*path, key):
                    lines[sub] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _nearest_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return 1


def _route_semantics(rules: TenantRules, lines: dict[tuple[Any, ...], int], file: str) -> list[RulesProblem]:
    problems = []
    known = set(rules.team_ids())
    for i, route in enumerate(rules.routes):
        if route.team not in known:
            problems.append(
                RulesProblem(
                    file,
                    _nearest_line(lines, ("routes", i, "team")),
                    f"route '{route.name}': team '{route.team}' is not one of the teams "
                    f"({', '.join(sorted(known))})",
                )
            )
    names = [r.name for r in rules.routes]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(
                RulesProblem(
                    file, _nearest_line(lines, ("routes", i, "name")), f"route name '{name}' is used twice"
                )
            )
    return problems


def _agent_semantics(rules: TenantRules, lines: dict[tuple[Any, ...], int], file: str) -> list[RulesProblem]:
    if rules.agents is None:
        return []
    known = set(rules.team_ids())
    return [
        RulesProblem(
            file,
            _nearest_line(lines, ("agents", "teams", group)),
            f"tenant '{rules.tenant}': agents.teams maps group '{group}' to team '{team}', which is not one "
            f"of the tenant's teams ({', '.join(sorted(known))})",
        )
        for group, team in rules.agents.teams.items()
        if team not in known
    ]


def load_file(path: Path) -> LoadedRules:
    """Load and validate one rules file; raise RulesError with every problem found."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([RulesProblem(file, 1, f"cannot read: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise RulesError([RulesProblem(file, line, f"YAML syntax: {reason}")]) from exc
    if node is None or not isinstance(data, dict):
        raise RulesError([RulesProblem(file, 1, "expected a mapping with tenant, teams, routes, ...")])
    lines = _line_index(node)
    try:
        rules = TenantRules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc)
            msg = err["msg"].removeprefix("Value error, ")
            reason = f"{where}: {msg}" if where else msg
            problems.append(RulesProblem(file, _nearest_line(lines, loc), reason))
        raise RulesError(problems) from exc
    problems = _route_semantics(rules, lines, file) + _agent_semantics(rules, lines, file)
    if path.stem != rules.tenant and not path.name.startswith("_"):
        problems.append(
            RulesProblem(file, lines.get(("tenant",), 1), f"tenant '{rules.tenant}' must match the file name")
        )
    if problems:
        raise RulesError(problems)
    route_lines = tuple(lines.get(("routes", i), 1) for i in range(len(rules.routes)))
    return LoadedRules(rules, file, route_lines, lines.get(("default_team",), 1))


def rule_files(path: Path, *, templates: bool = False) -> list[Path]:
    if path.is_file():
        return [path]
    # Files starting with "_" are templates, not tenants; `rules check` validates them too.
    return sorted(p for p in path.glob("*.yaml") if templates or not p.name.startswith("_"))


def load_dir(path: Path) -> dict[str, LoadedRules]:
    """Every tenant's rules; raise RulesError listing the problems of all files at once."""
    files = rule_files(path)
    if not files:
        raise RulesError([RulesProblem(str(path), 1, "no rules files (*.yaml) found")])
    loaded: dict[str, LoadedRules] = {}
    problems: list[RulesProblem] = []
    for file in files:
        try:
            item = load_file(file)
        except RulesError as exc:
            problems.extend(exc.problems)
            continue
        loaded[item.rules.tenant] = item
    if problems:
        raise RulesError(problems)
    return loaded


def check(path: Path) -> list[RulesProblem]:
    problems: list[RulesProblem] = []
    files = rule_files(path, templates=True) if path.exists() else []
    if not files:
        return [RulesProblem(str(path), 1, "no rules files (*.yaml) found")]
    for file in files:
        try:
            load_file(file)
        except RulesError as exc:
            problems.extend(exc.problems)
    return problems
