"""Approval rules that need no simulator: retention keeps the approved version; auto-approval only for files
without error findings and only when the tenant asks; approving needs a finished version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.app import approval
from shared.app.retention import expired_versions
from shared.core.models import FileRecord, FileStatus, Tenant
from shared.core.problems import Problem

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def version(n: int, **extra) -> FileRecord:
    return FileRecord(id="f", tenant_id="t", invoice_type="onetime", invoice_id="G1", status=FileStatus.AVAILABLE,
                      version=n, created_at=T0 + timedelta(days=n), blob_name=f"t/G1/f/v{n:04d}/x.csv", **extra)


def test_retention_keeps_the_approved_version() -> None:
    current = version(3, approved_version=1)
    old = [version(1), version(2)]
    gone = expired_versions(old, current, cutoff=T0 + timedelta(days=400))
    assert [v.version for v in gone] == [2]  # v1 is what resellers see; v2 was never approved


def tenant(auto: bool) -> Tenant:
    return Tenant(tenant_id="t", display_name="T", client_id="c", client_secret_setting="S", auto_approve=auto,
                  created_at=T0, updated_at=T0)


@pytest.mark.parametrize("auto, status, errors, approved", [
    (True, FileStatus.AVAILABLE, 0, 1), (True, FileStatus.AVAILABLE, None, 1),  # no validation (reseller view)
    (True, FileStatus.AVAILABLE, 2, None), (True, FileStatus.NEEDS_REVIEW, 2, None),
    (True, FileStatus.FAILED, 0, None), (False, FileStatus.AVAILABLE, 0, None)])
def test_auto_approval(auto, status, errors, approved) -> None:
    record = version(1, findings=None if errors is None else {"error": errors, "warning": 0, "info": 0})
    record.status = status
    approval.auto_approve(tenant(auto), record)
    assert record.approved_version == approved
    assert (record.approved_by == "automatic") == (approved is not None)


def test_only_a_finished_version_can_be_approved(webhook_env, ctx) -> None:
    record = version(1)
    record.status = FileStatus.FAILED
    with pytest.raises(Problem) as exc:
        approval.approve(ctx, "t", record, "*", 1, "someone")
    assert exc.value.status == 409



def test_no_approval_while_a_new_version_is_being_made(webhook_env, ctx) -> None:
    """The worker's ETag-guarded writes would lose to the approval's and the generation would start over."""
    record = version(2)  # v1 is kept; v2 is being made
    record.status = FileStatus.PROCESSING
    with pytest.raises(Problem) as exc:
        approval.approve(ctx, "t", record, "*", 1, "someone")
    assert exc.value.status == 409 and "being made" in exc.value.detail
