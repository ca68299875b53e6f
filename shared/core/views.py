"""Who sees what: the partner, reseller and customer views of a batch the margin engine has filled.

- partner: every line, every column (Microsoft's, any field Microsoft added, the engine's).
- reseller (with its MPN id): only that reseller's lines; Microsoft's price columns and ResellerMarginPercent removed
  (a reseller sees what it pays and what its customers pay, never the partner's cost or margin).
- customer (with its customer id; onetime and license only): only that customer's lines; Microsoft's price
  columns, ResellerSubtotal, ResellerMarginPercent and CustomerMarginPercent removed: the customer sees its price.
  With a reseller id too, only that reseller's lines of the customer (a customer may buy from two resellers, and
  a reseller asking for its customer's view must not see the other's lines or prices).

Fields Microsoft added that the layout does not know are kept in the partner view only: nobody can tell whether
a new field is a price, so reseller and customer views fail closed and leave them out.

Pure functions over Arrow record batches; filtering and projection stay vectorised.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from shared.core.columns import CUSTOMER_VIEW_TYPES, ENGINE_COLUMNS, Layout
from shared.core.models import View
from shared.core.ownership import owned_by

_RESELLER_REMOVED_ENGINE = ("ResellerMarginPercent",)
_CUSTOMER_REMOVED_ENGINE = ("ResellerSubtotal", "ResellerMarginPercent", "CustomerMarginPercent")


def check_view(layout: Layout, view: View | str) -> View:
    """The view, if this file type has it (customer views exist for onetime and license only)."""
    view = View(view)
    if view == View.CUSTOMER and layout.file_type not in CUSTOMER_VIEW_TYPES:
        raise ValueError(f"Customer views exist for onetime and license files only, not {layout.file_type.value}.")
    return view


def removed_columns(layout: Layout, view: View | str) -> frozenset[str]:
    """Columns a view never shows (Microsoft's prices and the margins the viewer must not see)."""
    view = check_view(layout, view)
    if view == View.PARTNER:
        return frozenset()
    engine = _RESELLER_REMOVED_ENGINE if view == View.RESELLER else _CUSTOMER_REMOVED_ENGINE
    return frozenset(layout.price_columns) | frozenset(engine)


def columns_for(layout: Layout, view: View | str, extra_columns: Iterable[str] = ()) -> tuple[str, ...]:
    """A view's columns in file order: Microsoft's, then (partner view only) unknown extras, then the engine's."""
    view = check_view(layout, view)
    removed = removed_columns(layout, view)
    extras = [c for c in extra_columns if c not in layout.columns and c not in ENGINE_COLUMNS]
    shown = [*layout.columns, *(extras if view == View.PARTNER else ()), *ENGINE_COLUMNS]
    return tuple(c for c in shown if c not in removed)


def _extras(layout: Layout, batch: pa.RecordBatch) -> list[str]:
    return [c for c in batch.schema.names if c not in layout.columns and c not in ENGINE_COLUMNS]


def _project(layout: Layout, batch: pa.RecordBatch, view: View) -> pa.RecordBatch:
    missing = [c for c in ENGINE_COLUMNS if c not in batch.schema.names]
    if missing:
        raise ValueError(f"A {view.value} view needs the margin engine's columns; missing {missing}.")
    return batch.select(list(columns_for(layout, view, _extras(layout, batch))))


def select_lines(layout: Layout, batch: pa.RecordBatch, view: View | str, reseller_id: str | None = None,
                 customer_id: str | None = None) -> pa.RecordBatch:
    """The lines a view shows (all columns still there: totals are measured before projection)."""
    view = check_view(layout, view)
    if view == View.PARTNER:
        return batch
    if view == View.RESELLER:
        rid = (reseller_id or "").strip()
        if not rid:
            raise ValueError("A reseller view needs the reseller's id.")
        keep = owned_by(batch.column(layout.reseller_column), {rid})  # whose line: shared.core.ownership
    else:
        cid = (customer_id or "").strip().lower()
        if not cid:
            raise ValueError("A customer view needs the customer's id.")
        keep = pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(batch.column(layout.customer_column))), cid)
        rid = (reseller_id or "").strip()
        if rid:  # narrowed to one reseller's lines of the customer
            keep = pc.and_(keep, owned_by(batch.column(layout.reseller_column), {rid}))
    return batch.filter(pc.fill_null(keep, False))


def project(layout: Layout, batch: pa.RecordBatch, view: View | str) -> pa.RecordBatch:
    """The columns a view shows, in file order."""
    view = check_view(layout, view)
    return batch if view == View.PARTNER else _project(layout, batch, view)


def partner_view(layout: Layout, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Every line, every column, unchanged."""
    return batch


def reseller_view(layout: Layout, batch: pa.RecordBatch, reseller_id: str) -> pa.RecordBatch:
    """Only `reseller_id`'s lines, without Microsoft's prices or the reseller margin."""
    return project(layout, select_lines(layout, batch, View.RESELLER, reseller_id=reseller_id), View.RESELLER)


def customer_view(layout: Layout, batch: pa.RecordBatch, customer_id: str,
                  reseller_id: str | None = None) -> pa.RecordBatch:
    """Only `customer_id`'s lines (case-insensitive id; of `reseller_id` only, when given), showing only the
    customer's price."""
    return project(layout, select_lines(layout, batch, View.CUSTOMER, reseller_id=reseller_id,
                                        customer_id=customer_id), View.CUSTOMER)


def view_batch(layout: Layout, batch: pa.RecordBatch, view: View | str, reseller_id: str | None = None,
               customer_id: str | None = None) -> pa.RecordBatch:
    """Select the view's lines and project its columns; the id the view needs must be given."""
    return project(layout, select_lines(layout, batch, view, reseller_id, customer_id), view)
