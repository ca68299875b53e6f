"""The README's rules table is the catalogue's (shared/core/validation/rules.py): one list, described once."""

from __future__ import annotations

import re
from pathlib import Path

from shared.core.validation import CATALOGUE, RULES, SEVERITIES
from shared.core.validation.rules import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end >= 0 else len(text)]


def test_readme_rules_table_is_the_catalogue() -> None:
    section = _section(README.read_text(encoding="utf-8"), "## Charge validation")
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == markdown_table(), "README's rules table differs from the catalogue: paste markdown_table()"


def test_catalogue_is_well_formed() -> None:
    ids = [rule.id for rule in CATALOGUE]
    assert len(ids) == len(set(ids)) and list(RULES) == ids
    for rule in CATALOGUE:
        assert re.fullmatch(r"[A-Z_]+", rule.id)
        assert set(rule.severity.split(" / ")) <= set(SEVERITIES), rule
