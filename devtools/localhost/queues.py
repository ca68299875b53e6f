"""Queue triggers and queue output bindings, with the Storage extension's delivery rules.

Per queue-triggered function a poller thread leases up to `batchSize` messages (a visibility timeout it
renews while the function runs), decodes them per `messageEncoding`, and runs the function in the shared
worker pool. Success deletes the message; failure makes it visible again after `visibilityTimeout`, or,
once `dequeue_count` reaches `maxDequeueCount`, copies the original text to `<queue>-poison` and deletes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions._abc import QueueMessage as AbstractQueueMessage
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, QueueServiceClient
from azure.storage.queue import QueueMessage as StorageMessage

from .indexing import FunctionInfo
from .settings import QueueOptions, SettingsError

log = logging.getLogger(__name__)

DEFAULT_CONNECTION = "AzureWebJobsStorage"
MIN_POLL_SECONDS = 0.05
MESSAGE_TTL = timedelta(days=7)  # the Storage default, for messages made up by admin invocations

Invoke = Callable[[FunctionInfo, Any], Any]


class MessageDecodingError(ValueError):
    """The message text is not valid for the configured encoding; the host counts that as a failed try."""


def encode(data: bytes, encoding: str) -> str:
    """Message text as the host writes it: base64 of the bytes, or the UTF-8 text itself."""
    return base64.b64encode(data).decode("ascii") if encoding == "base64" else data.decode("utf-8")


def decode(text: str, encoding: str) -> bytes:
    """The bytes the function sees for a stored message text."""
    if encoding != "base64":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MessageDecodingError("message is not valid base64 (messageEncoding is base64)") from exc


def to_bytes(value: Any) -> bytes:
    """An output binding value as message bytes, following the worker's converters."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, AbstractQueueMessage):
        return value.get_body()
    return json.dumps(value).encode("utf-8")


class QueueConnections:
    """Queue service clients by connection setting name, built lazily from the environment."""

    def __init__(self) -> None:
        self._clients: dict[str, QueueServiceClient] = {}
        self._created: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def service(self, connection: str | None) -> QueueServiceClient:
        name = connection or DEFAULT_CONNECTION
        with self._lock:
            if name not in self._clients:
                self._clients[name] = _service_client(name)
            return self._clients[name]

    def queue(self, connection: str | None, queue_name: str) -> QueueClient:
        return self.service(connection).get_queue_client(queue_name.lower())

    def ensure(self, client: QueueClient, connection: str | None) -> None:
        """Create the queue once per host run (the host does the same for trigger and poison queues)."""
        key = (connection or DEFAULT_CONNECTION, client.queue_name)
        if key in self._created:
            return
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        self._created.add(key)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _service_client(name: str) -> QueueServiceClient:
    """A connection string setting, or identity-based `<name>__queueServiceUri` / `__accountName` settings."""
    env = os.environ
    conn = env.get(name) or env.get(f"AzureWebJobs{name}")
    if conn:
        return QueueServiceClient.from_connection_string(conn)
    uri = env.get(f"{name}__queueServiceUri") or env.get(f"{name}__serviceUri")
    account = env.get(f"{name}__accountName")
    if not uri and account:
        uri = f"https://{account}.queue.core.windows.net"
    if not uri:
        raise SettingsError(f"storage connection '{name}' is not configured: set app setting {name}")
    from azure.identity import DefaultAzureCredential  # only needed for identity connections

    credential = DefaultAzureCredential(managed_identity_client_id=env.get(f"{name}__clientId"))
    return QueueServiceClient(uri, credential=credential)


class QueueOutputSink:
    """Writes queue output bindings (`func.Out[str]` or `$return`) after a successful invocation."""

    def __init__(self, connections: QueueConnections, options: QueueOptions) -> None:
        self._connections = connections
        self._options = options

    def __call__(self, binding: dict[str, Any], values: list[Any]) -> None:
        connection = binding.get("connection")
        client = self._connections.queue(connection, binding["queueName"])
        self._connections.ensure(client, connection)
        for value in values:
            client.send_message(encode(to_bytes(value), self._options.message_encoding))


def admin_message(text: str | None) -> QueueMessage:
    """The message an admin invocation hands a queue function: the input as body, first delivery."""
    now = datetime.now(timezone.utc)
    return QueueMessage(
        id=str(uuid.uuid4()),
        body=(text or "").encode("utf-8"),
        dequeue_count=1,
        insertion_time=now,
        expiration_time=now + MESSAGE_TTL,
        time_next_visible=now,
        pop_receipt=None,
    )


@dataclass
class Lease:
    """A received message we hold invisible; the pop receipt changes each time we renew it."""

    message: StorageMessage
    pop_receipt: str
    renewed_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False


class QueueListener:
    """Polls one queue for one function and applies the host's completion, retry and poison rules."""

    def __init__(
        self,
        info: FunctionInfo,
        connections: QueueConnections,
        options: QueueOptions,
        invoke: Invoke,
        executor: Executor,
        max_poll_interval: float = 1.0,
        lease_seconds: int = 600,
    ) -> None:
        self.info = info
        self.queue_name = str(info.trigger["queueName"]).lower()
        self._connection = info.trigger.get("connection")
        self._connections = connections
        self._options = options
        self._invoke = invoke
        self._executor = executor
        self._max_poll = max(MIN_POLL_SECONDS, min(max_poll_interval, options.max_polling_interval.total_seconds()))
        self._lease_seconds = max(1, int(lease_seconds))
        self._stop = threading.Event()
        self._capacity = threading.Condition()
        self._in_flight = 0
        self._leases: dict[int, Lease] = {}  # by id(lease): a redelivered message can be held twice
        self._leases_lock = threading.Lock()
        self._client: QueueClient | None = None
        self._poller = threading.Thread(target=self._poll_loop, name=f"queue:{info.name}", daemon=True)
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lease:{info.name}", daemon=True)

    # lifecycle

    def start(self) -> None:
        self._client = self._connections.queue(self._connection, self.queue_name)
        self._poller.start()
        self._renewer.start()
        log.info("queue trigger %s listening on %s", self.info.name, self.queue_name)

    def stop_polling(self) -> None:
        """Stop taking new messages; running invocations keep their leases until `close`."""
        self._stop.set()
        with self._capacity:
            self._capacity.notify_all()
        if self._poller.is_alive():
            self._poller.join()

    def close(self) -> None:
        """After the worker pool has drained: hand back leases of messages that never ran, stop renewing."""
        with self._leases_lock:
            leftovers = list(self._leases.values())
        for lease in leftovers:
            self._settle(lease, lambda: self._make_visible(lease, 0))
        if self._renewer.is_alive():
            self._renewer.join()

    # polling

    def _poll_loop(self) -> None:
        delay = 0.0
        failing = False
        while not self._stop.is_set():
            if not self._wait_for_capacity():
                break
            try:
                received = self._receive()
                if failing:
                    log.info("queue %s reachable again", self.queue_name)
                failing = False
            except Exception as exc:  # storage down, network, ...: keep polling, as the host does
                if not failing:
                    log.warning("polling queue %s failed (%s); retrying", self.queue_name, exc,
                                exc_info=not isinstance(exc, AzureError))
                failing, received = True, []
            delay = 0.0 if received else min(max(delay * 2, MIN_POLL_SECONDS), self._max_poll)
            for message in received:
                self._dispatch(message)
            if delay:
                self._stop.wait(delay)

    def _wait_for_capacity(self) -> bool:
        """Block until in-flight messages drop to newBatchThreshold (the host's rule for fetching more)."""
        with self._capacity:
            while self._in_flight > self._options.threshold and not self._stop.is_set():
                self._capacity.wait(0.5)
        return not self._stop.is_set()

    def _receive(self) -> list[StorageMessage]:
        assert self._client is not None
        self._connections.ensure(self._client, self._connection)
        pages = self._client.receive_messages(
            messages_per_page=self._options.batch_size,
            max_messages=self._options.batch_size,
            visibility_timeout=self._lease_seconds,
        )
        return list(pages)

    def _dispatch(self, message: StorageMessage) -> None:
        lease = Lease(message=message, pop_receipt=message.pop_receipt)
        with self._leases_lock:
            self._leases[id(lease)] = lease
        if message.dequeue_count > self._options.max_dequeue_count:
            # Already over the limit (e.g. a crash mid-run): the host poisons it without invoking.
            self._settle(lease, lambda: self._poison(lease))
            return
        with self._capacity:
            self._in_flight += 1
        try:
            self._executor.submit(self._process, lease)
        except RuntimeError:  # pool shut down while we were receiving; close() releases the lease
            self._release_slot()

    # processing

    def _process(self, lease: Lease) -> None:
        message = lease.message
        try:
            body = decode(message.content, self._options.message_encoding)
            self._invoke(self.info, self._function_message(message, body, lease.pop_receipt))
        except Exception:
            log.exception(
                "function %s failed on message %s (try %d of %d)",
                self.info.name, message.id, message.dequeue_count, self._options.max_dequeue_count,
            )
            self._settle(lease, lambda: self._failed(lease))
        else:
            self._settle(lease, lambda: self._delete(lease))
        finally:
            self._release_slot()

    @staticmethod
    def _function_message(message: StorageMessage, body: bytes, pop_receipt: str) -> QueueMessage:
        return QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=pop_receipt,
        )

    def _release_slot(self) -> None:
        with self._capacity:
            self._in_flight -= 1
            self._capacity.notify_all()

    def _failed(self, lease: Lease) -> None:
        if lease.message.dequeue_count >= self._options.max_dequeue_count:
            self._poison(lease)
        else:
            self._make_visible(lease, int(self._options.visibility_timeout.total_seconds()))

    def _poison(self, lease: Lease) -> None:
        poison = self._connections.queue(self._connection, f"{self.queue_name}-poison")
        self._connections.ensure(poison, self._connection)
        poison.send_message(lease.message.content)  # the original text, still encoded
        self._delete(lease)
        log.warning(
            "message %s moved to %s after %d tries", lease.message.id, poison.queue_name, lease.message.dequeue_count
        )

    def _delete(self, lease: Lease) -> None:
        assert self._client is not None
        self._client.delete_message(lease.message.id, lease.pop_receipt)

    def _make_visible(self, lease: Lease, seconds: int) -> None:
        assert self._client is not None
        self._client.update_message(lease.message.id, lease.pop_receipt, visibility_timeout=seconds)

    def _settle(self, lease: Lease, action: Callable[[], None]) -> None:
        """Finish with a message exactly once, under its lock so a renewal cannot swap the pop receipt."""
        with lease.lock:
            if lease.done:
                return
            lease.done = True
            try:
                action()
            except AzureError as exc:
                log.warning("could not settle message %s on %s: %s", lease.message.id, self.queue_name, exc)
        with self._leases_lock:
            self._leases.pop(id(lease), None)

    # lease renewal

    def _renew_loop(self) -> None:
        """Keep leased messages invisible while functions run: renew at half the lease, as the host does."""
        interval = min(self._lease_seconds / 4, 1.0)
        while True:
            stopping = self._stop.wait(interval)
            with self._leases_lock:
                leases = list(self._leases.values())
            if stopping and not leases:
                return
            for lease in leases:
                if time.monotonic() - lease.renewed_at >= self._lease_seconds / 2:
                    self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        assert self._client is not None
        with lease.lock:
            if lease.done:
                return
            try:
                updated = self._client.update_message(
                    lease.message.id, lease.pop_receipt, visibility_timeout=self._lease_seconds
                )
            except (ResourceNotFoundError, AzureError) as exc:
                log.warning("could not renew lease on message %s: %s", lease.message.id, exc)
                return
            lease.pop_receipt = updated.pop_receipt
            lease.renewed_at = time.monotonic()
        log.debug("renewed lease on message %s", lease.message.id)
