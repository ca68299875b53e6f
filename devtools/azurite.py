"""Start Azurite (pinned in package.json) on free loopback ports, for tests, `make serve` and `make demo`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT = "devstoreaccount1"
# Azurite's public, documented development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"Azurite did not open port {port}")


@dataclass
class Azurite:
    """A running Azurite process with its own ports and data folder."""

    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    location: str | None = None
    https_cert: str | None = None  # PEM certificate; with https_key turns on HTTPS (needed for OAuth)
    https_key: str | None = None
    oauth: bool = False
    in_memory: bool = False  # keep data in Azurite's memory instead of its folder
    process: subprocess.Popen | None = None
    _owns_location: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.https_cert else "http"

    def endpoint(self, service: str) -> str:
        port = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}[service]
        return f"{self.scheme}://127.0.0.1:{port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint('blob')};QueueEndpoint={self.endpoint('queue')};"
            f"TableEndpoint={self.endpoint('table')};"
        )

    def start(self, timeout: float = 60.0) -> "Azurite":
        if not AZURITE_BIN.exists():
            raise RuntimeError("Azurite is not installed: run `npm ci` (make does it for you)")
        if self.location is None:
            self.location = tempfile.mkdtemp(prefix="azurite-")
            self._owns_location = True
        args = [
            str(AZURITE_BIN),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]
        args += ["--inMemoryPersistence"] if self.in_memory else ["--location", self.location]
        if self.https_cert:
            args += ["--cert", self.https_cert, "--key", str(self.https_key)]
        if self.oauth:
            args += ["--oauth", "basic"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.location, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.table_port):
            _wait_for_port(port, deadline)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._owns_location and self.location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def environment_for(azurite: Azurite) -> dict[str, str]:
    """App settings that point the app at this Azurite."""
    return {"AzureWebJobsStorage": azurite.connection_string}


if __name__ == "__main__":  # pragma: no cover - manual use
    with Azurite() as a:
        print(a.connection_string, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    os._exit(0)
