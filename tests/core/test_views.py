"""Views never show a removed column or someone else's line, for every file type."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.columns import ENGINE_COLUMNS, LAYOUTS, Layout
from shared.core.margins import MarginEngine
from shared.core.models import View
from shared.adapters.microsoft_json import batch_from_items
from shared.core.views import (
    columns_for,
    customer_view,
    removed_columns,
    reseller_view,
    view_batch,
)

RESELLERS = ["1001", "1002", "", None]
CUSTOMERS = ["aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002", None]
ALL = list(LAYOUTS.values())
CUSTOMER_TYPES = [lay for lay in ALL if lay.file_type.value in ("onetime", "license")]


def _batch(layout: Layout, picks: list[tuple[int, int]]) -> Any:
    items = []
    for r, c in picks:
        item = {col: ("1.5" if col in layout.decimal_columns else f"{col}-x") for col in layout.columns}
        item.update({layout.reseller_column: RESELLERS[r], layout.customer_column: CUSTOMERS[c],
                     layout.charge_date_column: "2026-10-01", "SomethingNewFromMicrosoft": "9.99"})
        items.append(item)
    return MarginEngine(layout, []).apply(batch_from_items(layout, items))


picks = st.lists(st.tuples(st.integers(0, len(RESELLERS) - 1), st.integers(0, len(CUSTOMERS) - 1)), max_size=20)


@pytest.mark.parametrize("layout", ALL, ids=lambda lay: lay.file_type.value)
@settings(max_examples=25, deadline=None)
@given(picks=picks)
def test_reseller_view(layout: Layout, picks: list[tuple[int, int]]) -> None:
    batch = _batch(layout, picks)
    out = reseller_view(layout, batch, "1001")
    names = set(out.schema.names)
    assert not names & set(layout.price_columns)
    assert "ResellerMarginPercent" not in names
    assert {"ResellerSubtotal", "CustomerSubtotal", "CustomerMarginPercent"} <= names
    assert "SomethingNewFromMicrosoft" not in names  # unknown fields might be prices: fail closed
    assert out.column(layout.reseller_column).to_pylist() == ["1001"] * sum(1 for r, _ in picks if r == 0)
    assert tuple(out.schema.names) == columns_for(layout, View.RESELLER, batch.schema.names)


@pytest.mark.parametrize("layout", CUSTOMER_TYPES, ids=lambda lay: lay.file_type.value)
@settings(max_examples=25, deadline=None)
@given(picks=picks)
def test_customer_view(layout: Layout, picks: list[tuple[int, int]]) -> None:
    batch = _batch(layout, picks)
    out = customer_view(layout, batch, CUSTOMERS[0].upper())
    names = set(out.schema.names)
    assert not names & set(layout.price_columns)
    assert not names & {"ResellerSubtotal", "ResellerMarginPercent", "CustomerMarginPercent"}
    assert "CustomerSubtotal" in names and "SomethingNewFromMicrosoft" not in names
    assert out.column(layout.customer_column).to_pylist() == [CUSTOMERS[0]] * sum(1 for _, c in picks if c == 0)
    assert out.column("CustomerSubtotal").to_pylist() == [Decimal("1.50")] * out.num_rows


@pytest.mark.parametrize("layout", [lay for lay in ALL if lay not in CUSTOMER_TYPES], ids=lambda lay: lay.file_type.value)
def test_customer_view_only_for_onetime_and_license(layout: Layout) -> None:
    batch = _batch(layout, [(0, 0)])
    with pytest.raises(ValueError):
        customer_view(layout, batch, CUSTOMERS[0])
    with pytest.raises(ValueError):
        view_batch(layout, batch, "customer", customer_id=CUSTOMERS[0])
    with pytest.raises(ValueError):
        columns_for(layout, View.CUSTOMER)


@pytest.mark.parametrize("layout", ALL, ids=lambda lay: lay.file_type.value)
def test_partner_view_is_everything(layout: Layout) -> None:
    batch = _batch(layout, [(0, 0), (1, 1), (3, 2)])
    assert view_batch(layout, batch, View.PARTNER).equals(batch)
    assert removed_columns(layout, View.PARTNER) == frozenset()
    assert columns_for(layout, "partner", ["SomethingNewFromMicrosoft"]) == \
        (*layout.columns, "SomethingNewFromMicrosoft", *ENGINE_COLUMNS)


def test_views_need_the_engine_columns_and_ids() -> None:
    layout = LAYOUTS["onetime"]
    raw = batch_from_items(layout, [{layout.reseller_column: "1001"}])
    with pytest.raises(ValueError):
        reseller_view(layout, raw, "1001")
    batch = _batch(layout, [(0, 0)])
    with pytest.raises(ValueError):
        view_batch(layout, batch, View.RESELLER)
    with pytest.raises(ValueError):
        view_batch(layout, batch, View.CUSTOMER)
