"""The one place that makes download links: read-only SAS URLs for exactly one blob.

With a shared key (Azurite) the link is a service SAS signed with the account key. With identity-based access
(Azure, shared keys disabled) it is a user-delegation SAS; the delegation key is cached and reused until it is
close to its own expiry, so issuing a link costs no extra round trip. A link never outlives its key (the service
would refuse it from then on): a key is used only while it lasts at least as long as the link plus a margin, a
new key lasts at least that long too (up to the service's 7 days), and the link's expiry is capped at its key's.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from azure.storage.blob import BlobSasPermissions, UserDelegationKey, generate_blob_sas

from shared.adapters.storage import Storage

DELEGATION_KEY_LIFETIME = timedelta(hours=6)
DELEGATION_KEY_MARGIN = timedelta(minutes=30)  # renew when less than this is left after the link's own expiry
DELEGATION_KEY_MAX = timedelta(days=7)  # the service's limit for a user delegation key


class DownloadLinks:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._udk: UserDelegationKey | None = None
        self._udk_expiry: datetime | None = None
        self._lock = threading.Lock()

    def _delegation_key(self, now: datetime, until: datetime) -> tuple[UserDelegationKey, datetime]:
        """A delegation key valid until at least `until` (the link's expiry) plus the margin, and its expiry."""
        with self._lock:
            needed = until + DELEGATION_KEY_MARGIN
            if self._udk is None or self._udk_expiry is None or self._udk_expiry < needed:
                start = now - timedelta(minutes=5)  # tolerate clock skew
                expiry = min(max(now + DELEGATION_KEY_LIFETIME, needed), start + DELEGATION_KEY_MAX)
                self._udk = self.storage.blob_service.get_user_delegation_key(start, expiry)
                self._udk_expiry = expiry
            return self._udk, self._udk_expiry

    def url_for(self, blob_name: str, filename: str, *, minutes: int | None = None,
                now: datetime | None = None) -> tuple[str, datetime]:
        """A read-only link to one blob that saves as `filename`, and when it stops working."""
        now = now or datetime.now(timezone.utc)
        expiry = now + timedelta(minutes=minutes or self.storage.settings.download_link_minutes)
        container = self.storage.settings.files_container
        blob = self.storage.files.get_blob_client(blob_name)
        https = blob.url.startswith("https://")
        common = dict(
            account_name=self.storage.blob_service.account_name,  # blob.account_name is wrong for path-style URLs
            container_name=container,
            blob_name=blob_name,
            permission=BlobSasPermissions(read=True),
            start=now - timedelta(minutes=5),
            expiry=expiry,
            content_disposition=f'attachment; filename="{filename}"; filename*=UTF-8\'\'{quote(filename)}',
            protocol="https" if https else None,
        )
        key = self.storage.account_key
        if key:
            token = generate_blob_sas(account_key=key, **common)
        else:
            udk, key_expiry = self._delegation_key(now, expiry)
            if expiry > key_expiry:  # only past the service's 7-day limit; never a link its key cannot honour
                expiry = common["expiry"] = key_expiry
            token = generate_blob_sas(user_delegation_key=udk, **common)
        return f"{blob.url}?{token}", expiry
