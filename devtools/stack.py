"""Everything a developer needs running: Azurite, the Partner Center simulator and the local Functions host.

`make serve`, `make demo` and the end-to-end tests all start the same stack from here.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from devtools.azurite import Azurite
from devtools.tokens import APP_ROLES, LocalIssuer

ROOT = Path(__file__).resolve().parent.parent
DEMO_SECRET_SETTING = "PC_SECRET_DEMO"
DEFAULT_SETTINGS = {
    "GENERATION_QUEUE": "reconciliation-requests",
    "INVOICE_POLL_SCHEDULE": "0 0 */6 * * *",
    "RETENTION_SCHEDULE": "0 30 3 * * *",
    "WEBHOOK_QUEUE": "webhook-deliveries",
}

log = logging.getLogger("devtools.stack")


@dataclass
class Stack:
    port: int = 0
    sim_size: int = 2000
    sim_seed: int = 7
    data_dir: str | None = None  # Azurite's folder; a temporary one when None
    env: dict[str, str] = field(default_factory=dict)
    azurite: Azurite | None = None
    sim: Any = None
    host: Any = None
    issuer: LocalIssuer | None = None  # the token issuer the host trusts; started here when not given
    issuer_state_file: Path | None = None  # `make serve`: so `python -m devtools.tokens mint` can sign for it
    _own_issuer: bool = False

    def start(self) -> "Stack":
        for name, value in DEFAULT_SETTINGS.items():  # binding expressions (%NAME%) need these set
            os.environ.setdefault(name, value)
        if not os.environ.get("WEBHOOK_KEY_VAULT_URL"):  # webhook secrets: encrypted in Azurite, this run's key
            import base64

            os.environ.setdefault("WEBHOOK_SECRETS_KEY", base64.b64encode(os.urandom(32)).decode())
        if self.issuer is None:
            self.issuer = LocalIssuer(state_file=self.issuer_state_file).start()
            self._own_issuer = True
        os.environ["AUTH_LOCAL_ISSUER"] = self.issuer.issuer
        os.environ["AUTH_AUDIENCES"] = self.issuer.audience
        if not os.environ.get("AzureWebJobsStorage") and not os.environ.get("AzureWebJobsStorage__blobServiceUri"):
            self.azurite = Azurite(location=self.data_dir).start()
            os.environ["AzureWebJobsStorage"] = self.azurite.connection_string
        if not os.environ.get("PARTNER_CENTER_API_URL"):
            from devtools.simulator import Simulator

            workdir = tempfile.mkdtemp(prefix="pcsim-")
            self.sim = Simulator(seed=self.sim_seed, size=self.sim_size, workdir=workdir)
            self.sim.start()
            os.environ.update(self.sim.env())
            os.environ[DEMO_SECRET_SETTING] = self.sim.client_secret
        from shared.app.context import reset_context
        from shared.adapters.settings import reset_settings

        reset_settings()
        reset_context()
        from devtools.localhost import LocalHost

        self.host = LocalHost(module="function_app", port=self.port)
        self.host.start()
        return self

    @property
    def api(self) -> str:
        return f"{self.host.url}/api"

    def token(self, tenant_id: str, role: str | None = "partnerAdmin", object_id: str | None = None,
              app: bool = False) -> str:
        """A bearer token from the stack's issuer: by default a partner admin (app role) of `tenant_id`."""
        assert self.issuer is not None, "start the stack first"
        roles = [APP_ROLES[role]] if role else []
        return self.issuer.mint(object_id or "ad000000-0000-4000-8000-0000000000ad", tenant_id.lower(), roles,
                                app=app)

    def headers(self, tenant_id: str, role: str | None = "partnerAdmin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant_id, role)}"}

    def register_sample_tenant(self) -> str:
        """The simulator's partner tenant, registered through the API like a partner would (as its admin)."""
        body = {"displayName": "Simulated partner", "clientId": self.sim.client_id,
                "clientSecretSetting": DEMO_SECRET_SETTING, "billingAnniversaryDay": 12}
        resp = requests.put(f"{self.api}/tenants/{self.sim.tenant_id}", json=body, timeout=30,
                            headers=self.headers(self.sim.tenant_id))
        resp.raise_for_status()
        return self.sim.tenant_id

    def stop(self) -> None:
        for part in (self.host, self.sim, self.azurite, self.issuer if self._own_issuer else None):
            if part is not None:
                try:
                    part.stop()
                except Exception:  # keep stopping the rest
                    log.exception("stopping %s", type(part).__name__)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
