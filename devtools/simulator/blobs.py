"""Graph export blobs: gzip JSON Lines files generated row by row into the workdir, then streamed from disk.

A million-row export never sits in memory: each blob is written from the row generator in batches, once, and a
cache key made of the dataset, its data version, the wire options and the generator's own source code lets a
reused workdir skip the work on the next run.
"""

from __future__ import annotations

import gzip
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shared.core.columns import FileType

from .catalog import BILLING_CURRENCY
from .det import digest
from .ledger import Ledger
from .rows import Dataset
from .wire import RowStyle, blob_encoder

_GENERATOR_SOURCES = ("catalog.py", "world.py", "rows.py", "wire.py", "blobs.py")
_CODE_FINGERPRINT = digest(*(Path(__file__).with_name(name).read_bytes() for name in _GENERATOR_SOURCES)).hex()
_CONTAINERS = {(FileType.DAILY, True): "billedusagefastpath", (FileType.ONETIME, True): "billedreconfastpath",
               (FileType.DAILY, False): "unbilledusagefastpath", (FileType.ONETIME, False): "unbilledreconfastpath"}
_BATCH_ROWS = 2000


@dataclass(frozen=True)
class BlobSet:
    """The blobs of one export: a directory URL path and row ranges, pinned to one data version."""

    dataset: Dataset
    version: int
    fragment: str
    directory: str  # URL path of the manifest's rootDirectory
    names: tuple[str, ...]
    bounds: tuple[tuple[int, int], ...]  # [start, stop) row indexes per blob
    cache_dir: Path
    defects: frozenset[str] = frozenset()  # sim.faults.defect: pinned with the version


class BlobStore:
    def __init__(self, ledger: Ledger, workdir: Path, rows_per_blob: int, strings_percent: int) -> None:
        if rows_per_blob < 1:
            raise ValueError("rows_per_blob must be positive")
        self._ledger = ledger
        self._workdir = workdir
        self._rows_per_blob = rows_per_blob
        self._strings_percent = strings_percent
        self._sets: dict[str, BlobSet] = {}
        self._lock = threading.Lock()
        self._file_locks: dict[Path, threading.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-blobs")
        self._closing = threading.Event()

    def plan(self, ds: Dataset, fragment: str) -> BlobSet:
        """Name the blobs of an export of the dataset's current version and register their directory."""
        version = self._ledger.version(ds.key)
        world = self._ledger.world
        scope = f"InvoiceId={ds.invoice_number}" if ds.billed else f"Currency={BILLING_CURRENCY}"
        directory = (f"/blobs/{_CONTAINERS[ds.file_type, ds.billed]}/v1/PartnerTenantId={world.tenant_id}/"
                     f"BillingMonth={ds.start:%Y%m}/{scope}/InvoiceVersion={ds.start:%Y%m}{version:04d}/"
                     f"Fragment={fragment}")
        defects = self._ledger.defects(ds)
        key = digest(_CODE_FINGERPRINT, world.seed, world.size, repr(ds), version, fragment, self._rows_per_blob,
                     self._strings_percent, *sorted(defects)).hex()[:20]
        bounds = tuple((lo, min(lo + self._rows_per_blob, ds.rows)) for lo in range(0, ds.rows, self._rows_per_blob))
        names = tuple(f"part-{k:05d}-{key}.c000.json.gz" for k in range(len(bounds)))
        blob_set = BlobSet(ds, version, fragment, directory, names, bounds,
                           self._workdir / "blobs" / f"{ds.key}-{ds.file_type}-{key}", defects)
        with self._lock:
            self._sets[directory] = blob_set
        return blob_set

    def prepare(self, blob_set: BlobSet) -> Future[None]:
        """Generate every blob in the background (the export operation reports `running` meanwhile)."""
        return self._executor.submit(self._generate_all, blob_set)

    def _generate_all(self, blob_set: BlobSet) -> None:
        for k in range(len(blob_set.names)):
            if self._closing.is_set():  # do not keep the interpreter busy after stop()
                raise RuntimeError("the simulator stopped")
            self.path(blob_set, k)

    def find(self, url_path: str) -> tuple[BlobSet, int] | None:
        directory, _, name = url_path.rpartition("/")
        blob_set = self._sets.get(directory)
        if blob_set is None or name not in blob_set.names:
            return None
        return blob_set, blob_set.names.index(name)

    def path(self, blob_set: BlobSet, k: int) -> Path:
        """The blob's file, generated first if this is its first use."""
        target = blob_set.cache_dir / blob_set.names[k]
        with self._lock:
            lock = self._file_locks.setdefault(target, threading.Lock())
        with lock:
            if not target.exists():
                self._write(blob_set, k, target)
        return target

    def _write(self, blob_set: BlobSet, k: int, target: Path) -> None:
        ds = blob_set.dataset
        encoder = blob_encoder(ds.file_type, blob_set.fragment)
        style = RowStyle(self._ledger.world.seed, ds, self._strings_percent)
        start, stop = blob_set.bounds[k]
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{threading.get_ident()}.partial")
        with open(partial, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=1,
                                                         mtime=0) as out:
            batch: list[str] = []
            for i, row in self._ledger.rows(ds, start, stop, blob_set.version, blob_set.defects):
                batch.append(encoder.encode(row, style.numbers_as_strings(i), style.future_field(i)))
                if len(batch) == _BATCH_ROWS:
                    out.write(("\n".join(batch) + "\n").encode())
                    batch.clear()
            if batch:
                out.write(("\n".join(batch) + "\n").encode())
        os.replace(partial, target)

    def close(self) -> None:
        self._closing.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
