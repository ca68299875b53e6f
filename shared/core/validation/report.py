"""Findings and the report of one file: counts by severity and rule, and `findings.csv` (written and read back)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.core.boundaries import neutralise_text, restore_text
from shared.core.money import Decimal, plain
from shared.core.validation.rules import ERROR, INFO, WARNING

__all__ = ["FINDING_FIELDS", "Finding", "Report", "findings_csv", "read_findings_csv", "text"]

FINDING_FIELDS = ("rule", "severity", "key", "expected", "actual", "message")


def text(value: Any) -> str | None:
    """A finding's value as text: exact decimal text for amounts (shared.core.money.plain)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return plain(value)
    return str(value)


@dataclass
class Finding:
    rule: str
    severity: str
    key: dict[str, Any]
    expected: str | None
    actual: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "severity": self.severity, "key": self.key, "expected": self.expected,
                "actual": self.actual, "message": self.message}


@dataclass
class Report:
    findings: list[Finding]
    counts: Counter

    def totals(self) -> dict[str, Any]:
        by_severity: Counter = Counter()
        by_rule: dict[str, dict[str, int]] = {}
        for (rule, severity), n in self.counts.items():
            by_severity[severity] += n
            by_rule.setdefault(rule, {})[severity] = by_rule.get(rule, {}).get(severity, 0) + n
        return {"error": by_severity[ERROR], "warning": by_severity[WARNING], "info": by_severity[INFO],
                "byRule": dict(sorted(by_rule.items())), "kept": len(self.findings)}

    def csv_bytes(self) -> bytes:
        return findings_csv(self.findings)


def _key_text(key: dict[str, Any]) -> str:
    return "; ".join(f"{k}={'' if v is None else v}" for k, v in key.items())


def _parse_key(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in text.split("; ") if text else []:
        name, _, value = part.partition("=")
        out[name] = value or None
    return out


def findings_csv(findings: list[Finding]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(FINDING_FIELDS)
    for f in findings:
        cells = [f.rule, f.severity, _key_text(f.key), f.expected or "", f.actual or "", f.message]
        writer.writerow([neutralise_text(cell) for cell in cells])  # keys and messages quote Microsoft's text
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def read_findings_csv(data: bytes) -> list[dict[str, Any]]:
    rows = ({k: restore_text(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    return [{"rule": r["rule"], "severity": r["severity"], "key": _parse_key(r["key"]),
             "expected": r["expected"] or None, "actual": r["actual"] or None, "message": r["message"]}
            for r in rows]
