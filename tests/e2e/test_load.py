"""The short version of `python -m devtools.load` (run in full by `make bench`): ten users for ten seconds
listing files, reading records and paging charges through the local Functions host while two daily rated usage
files generate: no 5xx, no dropped connection, and both files exact against the simulator's invoices."""

from __future__ import annotations

import requests

from devtools.load import ENDPOINTS, load_while_generating
from devtools.stack import Stack
from tests.conftest import SECRET_SETTING


def test_no_5xx_under_concurrent_users_while_files_generate(sim, sim_env, issuer) -> None:
    with Stack(port=0, issuer=issuer) as stack:
        tenant = sim.tenant_id
        headers = stack.headers(tenant)
        body = {"displayName": "Sim", "clientId": sim.client_id, "clientSecretSetting": SECRET_SETTING}
        assert requests.put(f"{stack.api}/tenants/{tenant}", json=body, headers=headers, timeout=30).ok
        invoices = [i["id"] for i in sim.invoices() if i["id"].startswith("G") and i["documentType"] == "invoice"][:2]
        result, checks = load_while_generating(stack.api, tenant, headers, invoices,
                                               lambda inv: sim.expected(inv, "dailyratedusage"),
                                               users=10, seconds=10, generation_timeout=180,
                                               charges_grace=170)
    print(result.table())
    assert result.server_errors == 0, result.table()
    assert result.errors == []
    assert all(len(result.latencies[e]) > 0 for e in ENDPOINTS)  # every endpoint was really exercised
    # 202: the charges' first page while the invoice's snapshot is being ingested (it answers 200 once it is Ready)
    assert {s for (_, s) in result.statuses} <= {200, 202}, result.table()
    # the snapshot became Ready and was paged while the users were still on (they go on up to 170 s past the ten
    # for it: on a slow machine the One Time snapshot waits behind the two daily usage files in the queue)
    assert result.statuses[("page charges", 200)] > 0, result.table()
    assert len(checks) == 2 and all(c.exact for c in checks), [c.line() for c in checks]
