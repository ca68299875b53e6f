"""ASP.NET-style route templates, as the Functions host matches HTTP trigger routes.

Supports literals (matched case-insensitively; `:` in a literal is just a character), `{param}`,
optional `{param?}`, defaults `{param=value}`, catch-all `{*param}`, complex segments (`{name}.json`) and
inline constraints (`{id:guid}`, `{n:int:min(1)}`, `{code:regex(^[a-z]+$)}`). Among templates that match,
the one with the most specific segments wins, in the order ASP.NET ranks them: literal, complex,
constrained parameter, parameter, catch-all.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable
from urllib.parse import unquote

log = logging.getLogger(__name__)

RANK_LITERAL, RANK_COMPLEX, RANK_CONSTRAINED, RANK_PARAMETER, RANK_CATCH_ALL = 1, 2, 3, 4, 5


class RouteTemplateError(ValueError):
    """A route the host would refuse at start-up."""


def _int_in(bits: int) -> Callable[[str], bool]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return lambda v: bool(re.fullmatch(r"-?\d+", v)) and low <= int(v) <= high


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "infinity", "-infinity")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _int_in(32),
    "long": _int_in(64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _is_guid,
    "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
    "decimal": _is_float,
    "double": _is_float,
    "float": _is_float,
    "datetime": _is_datetime,
    "required": lambda v: v != "",
}


def _number(value: str) -> float | None:
    return float(value) if re.fullmatch(r"-?\d+(\.\d+)?", value) else None


def _parametrised(name: str, args: str) -> Callable[[str], bool] | None:
    """Constraints with arguments: minlength(n), maxlength(n), length(n[,m]), min(n), max(n), range(a,b), regex(r)."""
    if name == "regex":
        pattern = re.compile(args, re.IGNORECASE)  # ASP.NET: unanchored unless the pattern anchors itself
        return lambda v: bool(pattern.search(v))
    nums = [int(a) for a in args.split(",")]
    checks: dict[str, Callable[[str], bool]] = {
        "minlength": lambda v: len(v) >= nums[0],
        "maxlength": lambda v: len(v) <= nums[0],
        "length": lambda v: (len(v) == nums[0]) if len(nums) == 1 else nums[0] <= len(v) <= nums[1],
        "min": lambda v: (n := _number(v)) is not None and n >= nums[0],
        "max": lambda v: (n := _number(v)) is not None and n <= nums[-1],
        "range": lambda v: (n := _number(v)) is not None and nums[0] <= n <= nums[1],
    }
    return checks.get(name)


def parse_constraint(text: str) -> Callable[[str], bool] | None:
    """A check for one inline constraint, or None for one this host does not know (it is then ignored)."""
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, re.DOTALL)
    if not match:
        raise RouteTemplateError(f"bad route constraint {text!r}")
    name, args = match.group(1).lower(), match.group(2)
    check = _SIMPLE_CONSTRAINTS.get(name) if args is None else _parametrised(name, args)
    if check is None:
        log.warning("route constraint %r is not enforced locally", text)
    return check


@dataclass
class Parameter:
    """One `{...}` in a template."""

    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    constraints: list[Callable[[str], bool]] = field(default_factory=list)

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.constraints)


def _split_colons(text: str) -> list[str]:
    """Split `name:c1:c2(a:b)` on colons outside parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_parameter(text: str) -> Parameter:
    """The inside of `{...}`: `[*]name[:constraint...][=default][?]`."""
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    optional = text.endswith("?")
    text = text[:-1] if optional else text
    default = None
    parts = _split_colons(text)
    last = parts[-1]
    if "=" in last and ")" not in last.split("=", 1)[0]:
        parts[-1], default = last.split("=", 1)
    name = parts[0].strip()
    if not re.fullmatch(r"\w+", name):
        raise RouteTemplateError(f"bad route parameter name {name!r}")
    constraints = [c for c in (parse_constraint(p) for p in parts[1:]) if c is not None]
    return Parameter(name, optional=optional, catch_all=catch_all, default=default, constraints=constraints)


def _tokens(segment: str) -> list[str | Parameter]:
    """A template segment as literal strings and parameters (`{{`/`}}` are literal braces)."""
    tokens: list[str | Parameter] = []
    literal: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        if segment.startswith("{{", i) or segment.startswith("}}", i):
            literal.append(ch)
            i += 2
        elif ch == "{":
            end = _closing_brace(segment, i)
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(parse_parameter(segment[i + 1:end].replace("{{", "{").replace("}}", "}")))
            i = end + 1
        elif ch == "}":
            raise RouteTemplateError(f"unbalanced '}}' in route segment {segment!r}")
        else:
            literal.append(ch)
            i += 1
    if literal:
        tokens.append("".join(literal))
    return tokens


def _closing_brace(segment: str, start: int) -> int:
    depth = 0
    i = start + 1
    while i < len(segment):
        ch = segment[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth > 0 and segment.startswith(("{{", "}}"), i):
            i += 2
            continue
        elif ch == "}" and depth <= 0:
            return i
        i += 1
    raise RouteTemplateError(f"unclosed '{{' in route segment {segment!r}")


@dataclass
class Segment:
    """One `/`-separated part of a template, compiled to a regex over the decoded path segment."""

    tokens: list[str | Parameter]
    pattern: re.Pattern[str] = field(init=False)
    groups: dict[str, Parameter] = field(init=False)

    def __post_init__(self) -> None:
        regex, self.groups = [], {}
        for token in self.tokens:
            if isinstance(token, str):
                regex.append(re.escape(token))
            else:
                group = f"p{len(self.groups)}"
                self.groups[group] = token
                # Greedy: ASP.NET matches complex segments right to left, so `{name}.{ext}` on
                # `report.v2.csv` gives name=report.v2, ext=csv.
                regex.append(f"(?P<{group}>.+)" if len(self.tokens) > 1 else f"(?P<{group}>.*)")
        self.pattern = re.compile("".join(regex), re.IGNORECASE | re.DOTALL)

    @property
    def parameters(self) -> list[Parameter]:
        return list(self.groups.values())

    @property
    def catch_all(self) -> Parameter | None:
        params = self.parameters
        return params[0] if len(self.tokens) == 1 and params and params[0].catch_all else None

    @property
    def skippable(self) -> bool:
        """An absent path segment is fine: the parameter is optional or has a default."""
        params = self.parameters
        return len(self.tokens) == 1 and bool(params) and (params[0].optional or params[0].default is not None)

    @property
    def rank(self) -> int:
        if len(self.tokens) > 1:
            return RANK_COMPLEX
        token = self.tokens[0]
        if isinstance(token, str):
            return RANK_LITERAL
        if token.catch_all:
            return RANK_CATCH_ALL
        return RANK_CONSTRAINED if token.constraints else RANK_PARAMETER

    def match(self, text: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(text)
        if not found:
            return None
        values = {}
        for group, param in self.groups.items():
            value = found.group(group)
            if value == "" or not param.accepts(value):
                return None
            values[param.name] = value
        return values


class RouteTemplate:
    """A compiled route; `match` returns route parameters (strings) or None."""

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.segments = [Segment(_tokens(s)) for s in self.template.split("/")] if self.template else []
        self._validate()

    def _validate(self) -> None:
        for i, segment in enumerate(self.segments):
            misplaced = segment.catch_all is None or i != len(self.segments) - 1
            if misplaced and any(p.catch_all for p in segment.parameters):
                raise RouteTemplateError(f"a catch-all parameter must be the whole last segment: {self.template!r}")
        names = [p.name.lower() for s in self.segments for p in s.parameters]
        if len(names) != len(set(names)):
            raise RouteTemplateError(f"route parameter names repeat in {self.template!r}")

    @property
    def precedence(self) -> tuple[int, ...]:
        """Lower sorts first: more specific segments earlier in the path win (ASP.NET inbound precedence)."""
        return tuple(segment.rank for segment in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """Match a raw URL path (no query, no leading slash needed); values are percent-decoded."""
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str] = {}
        for i, segment in enumerate(self.segments):
            catch_all = segment.catch_all
            if catch_all is not None:
                rest = "/".join(parts[i:])
                if rest or catch_all.default is not None:
                    values[catch_all.name] = rest or str(catch_all.default)
                return values if (not rest or catch_all.accepts(rest)) else None
            if i >= len(parts):
                if not segment.skippable:
                    return None
                param = segment.parameters[0]
                if param.default is not None:
                    values[param.name] = param.default
                continue
            found = segment.match(parts[i])
            if found is None:
                return None
            values.update(found)
        return values if len(parts) <= len(self.segments) else None

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"
