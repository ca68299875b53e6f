"""Trouble on demand: throttling, server errors, slowness, broken downloads, expired SAS, missing or failing
invoices, re-rated data and newly published invoices. Controlled from Python (`sim.faults`) or over HTTP
(`POST /_sim/faults`), so tests of the real client can provoke each retry path."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .ledger import Ledger


@dataclass
class _Rule:
    kind: str  # "fail" (429/5xx) or "slow"
    remaining: int
    path_prefix: str
    status: int = 0
    retry_after: int = 0
    delay: float = 0.0  # seconds; not money


class Faults:
    """Counters that the server consumes request by request."""

    # What `POST /_sim/faults` may call: {"throttle": {"count": 2}, "no_data": {"invoice_id": "G..."}}.
    HTTP_ACTIONS = frozenset({"throttle", "server_error", "slow", "truncate_blobs", "expire_sas", "no_data",
                              "fail_invoice", "clear_invoice", "revise", "publish_next_invoice", "publish_vnd_invoices", "defect", "reset"})

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._truncate = 0
        self._expired = 0
        self._no_data: set[str] = set()
        self._failing: set[str] = set()

    # --- controls -----------------------------------------------------------------------------------------------

    def throttle(self, count: int = 1, path_prefix: str = "/", retry_after: int = 1) -> None:
        """The next `count` requests under `path_prefix` get 429 with Retry-After."""
        self._add(_Rule("fail", count, path_prefix, 429, retry_after))

    def server_error(self, count: int = 1, status: int = 500, path_prefix: str = "/", retry_after: int = 1) -> None:
        """The next `count` requests under `path_prefix` get 500, 502 or 503 (503 with Retry-After)."""
        if status not in (500, 502, 503):
            raise ValueError("status must be 500, 502 or 503")
        self._add(_Rule("fail", count, path_prefix, status, retry_after))

    def slow(self, count: int = 1, delay: float = 1.0, path_prefix: str = "/") -> None:
        """The next `count` requests under `path_prefix` wait `delay` seconds before answering."""
        self._add(_Rule("slow", count, path_prefix, delay=delay))

    def truncate_blobs(self, count: int = 1) -> None:
        """The next `count` blob downloads stop half-way through the gzip stream (with a matching Content-Length,
        so only decompression notices)."""
        with self._lock:
            self._truncate += count

    def expire_sas(self, count: int = 1) -> None:
        """The next `count` manifests carry a SAS whose `se` is already past."""
        with self._lock:
            self._expired += count

    def no_data(self, invoice_id: str) -> None:
        """Exports of the invoice fail with "No data available"; its v1 line items come back empty."""
        with self._lock:
            self._no_data.add(invoice_id.lower())

    def fail_invoice(self, invoice_id: str) -> None:
        """Every data request for the invoice answers 500 until `clear_invoice` or `reset`."""
        with self._lock:
            self._failing.add(invoice_id.lower())

    def clear_invoice(self, invoice_id: str) -> None:
        with self._lock:
            self._no_data.discard(invoice_id.lower())
            self._failing.discard(invoice_id.lower())

    def revise(self, invoice_id: str) -> int:
        """Microsoft re-rates the invoice: a few usage quantities change, totals stay consistent, the manifest eTag
        changes. Returns the new data version."""
        return self._ledger.revise(invoice_id)

    def defect(self, invoice_id: str, kind: str) -> None:
        """Microsoft's data of the invoice carries a defect of this kind until `reset` (see defects.py): served
        alike by v1 pages and Graph exports; `expected()` follows the served rows."""
        self._ledger.add_defect(invoice_id, kind)

    def publish_next_invoice(self) -> dict[str, object]:
        """The next month's new-commerce invoice appears; returns its id and billing period."""
        invoice = self._ledger.publish_next()
        return {"id": invoice.id, "billingPeriodStartDate": invoice.start.isoformat(),
                "billingPeriodEndDate": invoice.end.isoformat()}

    def publish_vnd_invoices(self) -> list[dict[str, object]]:
        """Two new-commerce invoices in Vietnamese dong appear (devtools/simulator/vnd.py): lines of ~10^13 dong,
        and seat removals refunding cycles billed in the earlier one. Returns their ids and billing periods."""
        return [{"id": inv.id, "billingPeriodStartDate": inv.start.isoformat(), "currency": inv.currency}
                for inv in self._ledger.publish_vnd()]

    def reset(self) -> None:
        """No faults, no revisions, no published invoices: the simulator as started."""
        with self._lock:
            self._rules.clear()
            self._truncate = self._expired = 0
            self._no_data.clear()
            self._failing.clear()
        self._ledger.reset()

    # --- what the server asks -----------------------------------------------------------------------------------

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def _take(self, kind: str, path: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules:
                if rule.kind == kind and path.startswith(rule.path_prefix):
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                    return rule
        return None

    def take_delay(self, path: str) -> float:
        rule = self._take("slow", path)
        return rule.delay if rule else 0.0

    def take_failure(self, path: str) -> _Rule | None:
        return self._take("fail", path)

    def take_truncation(self) -> bool:
        with self._lock:
            if self._truncate:
                self._truncate -= 1
                return True
        return False

    def take_expired_sas(self) -> bool:
        with self._lock:
            if self._expired:
                self._expired -= 1
                return True
        return False

    def has_no_data(self, invoice_id: str) -> bool:
        return invoice_id.lower() in self._no_data

    def is_failing(self, invoice_id: str | None) -> bool:
        return bool(invoice_id) and invoice_id.lower() in self._failing
