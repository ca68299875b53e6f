"""Charge validation: Microsoft's own rules checked while a partner-view file is made, in the same single pass.

- `rules` — the catalogue (one entry per rule; the README's table is generated from it), severities, columns;
- `formulas` — Microsoft's Subtotal formulas, exactly (shared.core.money's 100-digit context), and the float screen;
- `hashing` — 64-bit hashes of line keys; `duplicates` — the later copies of a key, judged once the file is seen
  (the store of hashes is injected: on disk in the worker);
- `arrow_dates` — dates and masks over Arrow arrays;
- `line_checks` — the per-batch checks; `validator` — the state per segment and what the whole file tells;
- `report` — findings, their counts and `findings.csv`.
"""

from shared.core.validation.arrow_dates import add_months
from shared.core.validation.formulas import check_subtotal, rounddown, seat_subtotal, usage_subtotal
from shared.core.validation.duplicates import DuplicateStore, MemoryDuplicates, later_copies
from shared.core.validation.hashing import row_hashes
from shared.core.validation.report import Finding, Report, findings_csv, read_findings_csv
from shared.core.validation.rules import CATALOGUE, DEFAULT_CAP, ERROR, INFO, RULES, SEVERITIES, WARNING
from shared.core.validation.validator import Validator

__all__ = ["CATALOGUE", "DEFAULT_CAP", "ERROR", "INFO", "RULES", "SEVERITIES", "WARNING", "DuplicateStore", "Finding",
           "MemoryDuplicates", "Report", "Validator", "add_months", "check_subtotal", "findings_csv", "later_copies",
           "read_findings_csv", "rounddown", "row_hashes", "seat_subtotal", "usage_subtotal"]
