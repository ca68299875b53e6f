"""`make serve`: the whole system on this machine until Ctrl-C, for curl and the browser.

Starts Azurite and the local Functions host on 127.0.0.1:7071. When PARTNER_CENTER_API_URL is not set it also
starts the Partner Center simulator and registers its partner tenant; when it is set (a real Partner Center, a
sandbox, another test server) the given URLs, CA bundle and secrets from the environment are used as they are,
and no sample data is registered.
"""

from __future__ import annotations

import signal
import threading

from devtools.stack import ROOT, Stack


def main() -> None:
    from shared.adapters.telemetry import configure_logging

    configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (ROOT / ".run" / "azurite").mkdir(parents=True, exist_ok=True)
    from devtools.tokens import STATE_FILE

    with Stack(port=7071, data_dir=str(ROOT / ".run" / "azurite"), issuer_state_file=STATE_FILE) as stack:
        print(f"API:       {stack.api}")
        print(f"Web:       {stack.host.url}/api/app/ (development sign-in: paste a token minted as below)")
        print(f"Issuer:    {stack.issuer.issuer} (tokens: python -m devtools.tokens mint --role partnerAdmin "
              "--tenant <tenant id>)")
        if stack.sim:
            tenant = stack.register_sample_tenant()
            print(f"Simulator: {stack.sim.base_url} (seed {stack.sim_seed}, CA {stack.sim.ca_path})")
            print(f"Tenant:    {tenant}")
            invoices = [i["id"] for i in stack.sim.invoices()]
            print(f"Invoices:  {', '.join(invoices)}")
            example = next(i for i in invoices if i.startswith("G"))
            print("Try:       T=$(.venv/bin/python -m devtools.tokens mint --role partnerAdmin "
                  f"--tenant {tenant})")
            print("           curl -s -X POST -H \"Authorization: Bearer $T\" -H 'Content-Type: application/json' "
                  f"-d '{{\"invoiceType\":\"onetime\",\"invoiceId\":\"{example}\"}}' "
                  f"{stack.api}/tenants/{tenant}/reconciliation-files")
        print("Ctrl-C stops everything.", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
