"""The one module that owns paho-mqtt: an asyncio facade over one MQTT connection.

How paho meets asyncio (one network thread per connection):
- `open()` builds a fresh paho `Client` per connection (no paho state survives a disconnect,
  so paho never resends anything behind the store's back) and runs paho's blocking
  `connect()` (TCP connect + TLS handshake + CONNECT written) in a worker thread, bounded by
  `CONNECT_TIMEOUT_S`.
- After the handshake every socket operation of the connection (`loop_read`, `loop_write`,
  `loop_misc` for keepalive) runs on one thread of its own, `carebox.uplink.network`, which
  polls the socket and a wake-up socketpair. One thread for reads and writes because OpenSSL
  forbids using one SSL object from two threads at once; off the event loop because CPython
  releases the GIL while OpenSSL encrypts and the kernel sends, so that work overlaps what
  the loop does meanwhile (rendering, the store's results). paho's own `loop_start()` is not
  used: its thread will not stop while a publish waits for its PUBACK, so an abort on a
  silent link would have to close the socket under it.
- `publish()` and `disconnect()` stay on the loop thread: paho guards its message table with
  its own locks and queues the packet on a deque; the loop then wakes the network thread
  (one byte on the socketpair, not resent until the thread has read it). paho's "register
  write" callback is a no-op on purpose: set at all, it keeps paho from writing from the
  calling thread; the network thread asks for writability whenever paho has bytes waiting.
- paho's callbacks run on the network thread and only record: PUBACKs are collected and
  handed to the loop once per pass of the thread (`call_soon_threadsafe`, one hop per batch,
  not per packet), CONNACK and the disconnect in the same queue, so the loop sees them in
  wire order. Every future is created, completed and dropped on the loop thread only.
- A QoS 1 publish returns a future that completes on that packet's PUBACK (paho's
  `on_publish`), fails with `PublishRejected` on an MQTT 5 failure reason, and fails with
  `ConnectionLost` when the connection drops first. Nothing else means delivered.
- `closed` resolves only once the network thread has ended and the socket is closed, so a
  connection whose `closed` is done holds no thread and no file descriptor. An abort (no
  DISCONNECT, so the broker publishes the will) asks the thread to stop; the thread closes
  the socket itself, never the loop under it.
- TLS read errors after the handshake (TLS 1.3 sends the client-certificate verdict after the
  client thinks the handshake is done) are seen by a `SSLSocket` subclass that remembers the
  last `SSLError`, because paho folds them into "connection lost".

MQTT 5 first; a broker that answers "unsupported protocol version" raises
`ProtocolUnsupported` and the caller retries with 3.1.1 (`Protocol.V311`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from gateway.uplink.config import UplinkSettings
from gateway.uplink.errors import (
    BrokerRejected,
    BrokerUnavailable,
    ClientCertificateRejected,
    ClockNotSynchronized,
    ConnectFailed,
    ConnectionLost,
    FailureKind,
    HandshakeCut,
    NetworkUnreachable,
    NotConnected,
    NotTls,
    PublishRejected,
    RetainUnsupported,
    ServerCertificateUntrusted,
    UplinkConfigError,
)

__all__ = [
    "BrokerLimits",
    "MqttConnection",
    "Protocol",
    "ProtocolUnsupported",
    "classify",
    "tls_context",
]

log = logging.getLogger(__name__)

# TCP + TLS handshake, and again CONNECT -> CONNACK: a silent network must not hang a connect;
# a Pi Zero's TLS handshake over a slow cellular link stays well under it.
CONNECT_TIMEOUT_S: Final = 15.0
CLOSE_TIMEOUT_S: Final = 2.0  # time for a DISCONNECT to leave; the socket is closed after it
# An aborted connection's thread stops at its next wake-up, within microseconds; this only
# bounds the wait if it is starved of the GIL, so a close never hangs the loop.
STOP_TIMEOUT_S: Final = 2.0
MISC_INTERVAL_S: Final = 0.5  # paho's keepalive clock ticks here; fine enough for 1 s keepalives

# OpenSSL verify codes (X509_V_ERR_*) the messages distinguish.
_NOT_YET_VALID: Final = 9
_EXPIRED: Final = 10
_HOSTNAME_MISMATCH: Final = 62
_IP_MISMATCH: Final = 64

# MQTT 5 CONNACK reason codes that no retry will fix (anything else >= 0x80 is transient).
_REJECTED_CODES: Final = frozenset({0x82, 0x85, 0x86, 0x87, 0x8A, 0x8C, 0x90, 0x99})
_UNSUPPORTED_PROTOCOL: Final = 0x84
_RETAIN_NOT_SUPPORTED: Final = 0x9A

# An error, a hang-up or a closed fd is for paho's read to turn into "connection lost"; left
# unread, poll() would report it again at once, and the network thread would spin.
_READ_EVENTS: Final = select.POLLIN | select.POLLERR | select.POLLHUP | select.POLLNVAL


class Protocol(enum.Enum):
    V5 = paho.MQTTv5
    V311 = paho.MQTTv311


class ProtocolUnsupported(ConnectFailed):
    """The broker does not speak MQTT 5, or may not: retry with 3.1.1 at once. `explicit`:
    it said so (CONNACK "unsupported protocol version"), so 3.1.1 it is from now on; else it
    closed the MQTT 5 CONNECT unanswered, as a 3.1.1 broker may but also a broker going away
    does, and the next connection tries MQTT 5 again."""

    kind = FailureKind.TRANSIENT
    layer = "broker"

    def __init__(self, message: str, *, explicit: bool) -> None:
        super().__init__(message)
        self.explicit = explicit


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """What an MQTT 5 broker's CONNACK says it takes (None: it set no limit)."""

    maximum_packet_size: int | None = None
    receive_maximum: int | None = None
    retain_available: bool = True


class _ObservedSSLSocket(ssl.SSLSocket):
    """Remembers the last SSLError raised by recv/send: paho reports it only as a lost link."""

    last_error: ssl.SSLError | None = None

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        try:
            return super().recv(buflen, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            self._remember(exc)
            raise

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return super().send(data, flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except OSError as exc:
            # A broker that refused our certificate sent its alert and closed; the write sees
            # only the close. The alert, which says why, is still in the receive buffer.
            self.last_error = exc if isinstance(exc, ssl.SSLError) else None
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                self.recv(1)
            raise

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except BaseException:
            # paho drops a socket whose handshake failed without closing it.
            self.close()
            raise

    def _remember(self, exc: ssl.SSLError) -> None:
        if self.last_error is None or isinstance(self.last_error, ssl.SSLEOFError):
            self.last_error = exc


def tls_context(settings: UplinkSettings) -> ssl.SSLContext:
    """TLS 1.2+, the broker verified against [upstream] ca with its host name, our certificate
    presented. There is no switch to turn any of it off. Blocking (reads files)."""
    settings.check_files()
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca))
    except ssl.SSLError as exc:
        raise UplinkConfigError(
            f"[upstream] ca {str(settings.ca)!r} is not a PEM CA certificate ({exc.reason})"
        ) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(settings.cert), str(settings.key))
    except ssl.SSLError as exc:
        raise UplinkConfigError(
            f"[upstream] cert {str(settings.cert)!r} and key {str(settings.key)!r} do not "
            f"load as a pair ({exc.reason}): check both files"
        ) from exc
    ctx.sslsocket_class = _ObservedSSLSocket
    return ctx


def _validity_failure(
    what: str, problem: str, clock_trusted: bool, fix: str
) -> ClockNotSynchronized | ConnectFailed:
    if not clock_trusted:
        return ClockNotSynchronized(
            f"clock not synchronized: the {what} looks {problem} to this box; "
            "waiting for NTP (check the network time service)"
        )
    return ClientCertificateRejected(f"{what} {problem}: {fix}")


def classify(exc: BaseException, settings: UplinkSettings, *, clock_trusted: bool) -> ConnectFailed:
    """A failed connect as one of our errors, each with a message naming what to do."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            return ServerCertificateUntrusted(
                f"server certificate at {where} is not for {settings.host!r}: "
                "check the host name in [upstream] url"
            )
        if code in (_EXPIRED, _NOT_YET_VALID):
            problem = "expired" if code == _EXPIRED else "not yet valid"
            failure = _validity_failure(
                "broker's certificate",
                problem,
                clock_trusted,
                "the broker's operator must renew it",
            )
            if isinstance(failure, ClockNotSynchronized):
                return failure
            return ServerCertificateUntrusted(str(failure))
        return ServerCertificateUntrusted(
            f"server certificate at {where} not trusted by {str(settings.ca)!r} "
            f"({exc.verify_message}): check [upstream] ca"
        )
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "CERTIFICATE_EXPIRED" in reason:
            return _validity_failure(
                f"client certificate {str(settings.cert)!r}",
                "expired (the broker refused it)",
                clock_trusted,
                "re-enroll this box (carebox provision enroll)",
            )
        if any(
            r in reason
            for r in (
                "UNKNOWN_CA",
                "BAD_CERTIFICATE",
                "CERTIFICATE_REQUIRED",
                "CERTIFICATE_UNKNOWN",
                "CERTIFICATE_REVOKED",
                "UNSUPPORTED_CERTIFICATE",
                "ACCESS_DENIED",
                "DECRYPT_ERROR",
            )
        ):
            if not clock_trusted:
                return ClockNotSynchronized(
                    "clock not synchronized: the broker refused our certificate and this "
                    "box's clock is not trusted; waiting for NTP"
                )
            return ClientCertificateRejected(
                f"broker at {where} rejected the client certificate {str(settings.cert)!r} "
                f"({exc.reason}): check [upstream] cert and key, or re-enroll"
            )
        if any(r in reason for r in ("WRONG_VERSION_NUMBER", "RECORD_LAYER")):
            # bytes came back, and they were not TLS
            return NotTls(
                f"{where} does not speak TLS (a plaintext MQTT port?): check the port in "
                "[upstream] url (usually 8883)"
            )
        if "UNEXPECTED_EOF" in reason or isinstance(exc, ssl.SSLEOFError):
            return _handshake_cut(where)
        return NotTls(f"TLS with {where} failed ({exc.reason or exc}): check [upstream] url")
    if isinstance(exc, socket.gaierror):
        return NetworkUnreachable(
            f"cannot resolve {settings.host!r} ({exc.strerror}): check DNS and [upstream] url",
            layer="dns",
        )
    if isinstance(exc, ConnectionRefusedError):
        return NetworkUnreachable(
            f"broker {where} refused the connection (down?); retrying", layer="tcp"
        )
    if isinstance(exc, TimeoutError):
        return NetworkUnreachable(f"no answer from {where} (network down?); retrying", layer="tcp")
    if isinstance(exc, OSError):
        return NetworkUnreachable(
            f"cannot reach {where} ({exc.strerror or exc}); retrying", layer="tcp"
        )
    return NetworkUnreachable(f"cannot connect to {where} ({exc!r}); retrying", layer="tcp")


def _handshake_cut(where: str) -> HandshakeCut:
    return HandshakeCut(
        f"{where} closed the TLS handshake: the broker (or a proxy before it) is going away, "
        "or [upstream] url names a plaintext MQTT port (TLS is usually 8883); retrying"
    )


def _connack_failure(reason: ReasonCode, protocol: Protocol, where: str) -> ConnectFailed:
    value = reason.value
    if protocol is Protocol.V5 and value in (_UNSUPPORTED_PROTOCOL, 1):
        return ProtocolUnsupported(f"broker {where} does not speak MQTT 5", explicit=True)
    if protocol is Protocol.V311:
        # 3.1.1 return codes: 1 protocol, 2 identifier, 4 credentials, 5 not authorized.
        if value in (0x84, 0x85, 0x86, 0x87, 1, 2, 4, 5):
            return BrokerRejected(
                f"broker {where} refused this box ({reason}): check the broker's ACL for "
                "this gateway's certificate"
            )
        return BrokerUnavailable(f"broker {where} unavailable ({reason}); retrying")
    if value == _RETAIN_NOT_SUPPORTED:
        return RetainUnsupported(
            f"broker {where} does not keep retained messages: status goes unretained"
        )
    if value in _REJECTED_CODES:
        return BrokerRejected(
            f"broker {where} refused this box ({reason}): check the broker's ACL for this "
            "gateway's certificate"
        )
    return BrokerUnavailable(f"broker {where} unavailable ({reason}); retrying")


class MqttConnection:
    """One live MQTT connection. Dead once `closed` is done; make a new one to reconnect."""

    def __init__(self, settings: UplinkSettings, protocol: Protocol, client: paho.Client) -> None:
        self.settings = settings
        self.protocol = protocol
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._sock: socket.socket | None = None
        self._lost: ConnectionLost | None = None  # the first failure; the loop's view
        self._thread: threading.Thread | None = None
        self._thread_done = False
        # Written by the loop thread, read by the network thread: a bool needs no lock.
        self._stopping = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._wake_sent = False  # a wake-up byte the network thread has not read yet
        self._acks: list[tuple[int, str | None, int]] = []  # network thread only
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self.limits = BrokerLimits()
        """What the broker's CONNACK said it takes: the uplink keeps under it."""
        self.closed: asyncio.Future[ConnectionLost] = self._loop.create_future()
        """Resolves (with the reason, not raised) when the connection is gone: its network
        thread ended and its socket closed."""

    @classmethod
    async def open(
        cls,
        settings: UplinkSettings,
        *,
        protocol: Protocol = Protocol.V5,
        will: tuple[str, bytes] | None = None,
        retain: bool = True,
        clock_trusted: bool = True,
        max_inflight: int = 20,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> MqttConnection:
        """Connect and wait for a successful CONNACK; `ConnectFailed` (classified) if not."""
        ctx = await asyncio.to_thread(tls_context, settings)
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.gateway_id,
            protocol=protocol.value,
            clean_session=True if protocol is Protocol.V311 else None,
            reconnect_on_failure=False,
        )
        client.tls_set_context(ctx)
        # paho applies it to the TCP connect and again to the TLS handshake: half each, so the
        # connect thread is done by the time `open` stops waiting for it
        client.connect_timeout = connect_timeout_s / 2
        # paho queues beyond this itself; ours stays below it (+ status and events).
        client.max_inflight_messages_set(max_inflight + 4)
        client.max_queued_messages_set(0)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=retain)
        conn = cls(settings, protocol, client)
        client.on_connect = conn._on_connect
        client.on_disconnect = conn._on_disconnect
        client.on_publish = conn._on_publish
        # Runs in the connect thread; only records the socket, read back after the join.
        client.on_socket_open = conn._on_socket_open
        # 3.1.1 says clean session in the constructor; paho refuses clean_start for it.
        clean_start = True if protocol is Protocol.V5 else paho.MQTT_CLEAN_START_FIRST_ONLY
        try:
            await asyncio.wait_for(
                asyncio.to_thread(
                    client.connect,
                    settings.host,
                    settings.port,
                    keepalive=settings.keepalive_s,
                    clean_start=clean_start,
                ),
                connect_timeout_s + 1,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            observed = conn._sock.last_error if isinstance(conn._sock, _ObservedSSLSocket) else None
            sock = client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            if observed is not None:
                raise classify(observed, settings, clock_trusted=clock_trusted) from exc
            if isinstance(exc, ConnectionResetError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
                # TCP was accepted, then the handshake was cut without a word
                raise _handshake_cut(f"{settings.host}:{settings.port}") from exc
            raise classify(exc, settings, clock_trusted=clock_trusted) from exc
        conn._attach()
        closed = conn.closed
        try:
            async with asyncio.timeout(connect_timeout_s):
                waits: set[asyncio.Future[Any]] = {conn._connack, closed}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            await conn._abort()
            raise BrokerUnavailable(
                f"no CONNACK from {settings.host}:{settings.port} within "
                f"{connect_timeout_s:.0f} s; retrying"
            ) from exc
        if conn._connack.done() and conn._connack.exception() is None and conn._lost is None:
            return conn
        # Also when the link already dropped: the thread must be gone before the TLS error
        # it may have seen is read below.
        await conn._abort()
        if conn._connack.done() and (failure := conn._connack.exception()) is not None:
            raise failure
        tls_error = conn._sock.last_error if isinstance(conn._sock, _ObservedSSLSocket) else None
        if tls_error is not None:
            raise classify(tls_error, settings, clock_trusted=clock_trusted) from tls_error
        if protocol is Protocol.V5:
            raise ProtocolUnsupported(
                f"broker {settings.host}:{settings.port} closed an MQTT 5 CONNECT unanswered",
                explicit=False,
            )
        raise BrokerUnavailable(
            f"broker {settings.host}:{settings.port} closed the connection before CONNACK; retrying"
        )

    # --- the network thread -------------------------------------------------------------------

    def _attach(self) -> None:
        sock = self._client.socket()
        if sock is None:
            self._fail(ConnectionLost("connection closed during CONNECT"))
            return
        assert isinstance(sock, socket.socket)
        # Set at all, it keeps paho from writing from the thread that queues a packet (the
        # loop's publish); the network thread polls for writability whenever paho wants it.
        self._client.on_socket_register_write = _ignore
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(
            target=self._serve,
            args=(sock, self._wake_r),
            name="carebox.uplink.network",
            # A connection its owner forgot must not keep the process alive at exit.
            daemon=True,
        )
        self._thread.start()

    def _on_socket_open(self, _c: paho.Client, _u: object, sock: object) -> None:
        if isinstance(sock, socket.socket):
            self._sock = sock

    def _serve(self, sock: socket.socket, wake_r: socket.socket) -> None:
        """Every read, write and keepalive tick of the connection, until paho closes the
        socket (a lost link, our DISCONNECT written) or the loop asks it to stop."""
        client = self._client
        fd = sock.fileno()
        tls = sock if isinstance(sock, ssl.SSLSocket) else None
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        next_misc = time.monotonic() + MISC_INTERVAL_S
        try:
            while not self._stopping:
                writing = client.want_write()
                poller.register(fd, select.POLLIN | select.POLLOUT if writing else select.POLLIN)
                # Decrypted bytes left in the SSL object do not make the fd readable again.
                buffered = tls is not None and tls.pending() > 0
                wait_ms = 0 if buffered else math.ceil(1000 * (next_misc - time.monotonic()))
                events = dict(poller.poll(max(0, wait_ms)))
                if self._stopping:
                    break
                woken = wake_r.fileno() in events
                if woken:
                    # Read before clearing the flag: a publish queued after the read sends
                    # a fresh byte, one queued before it is seen by the want_write() below.
                    with contextlib.suppress(BlockingIOError):
                        wake_r.recv(4096)
                    self._wake_sent = False
                ready = events.get(fd, 0)
                if buffered or ready & _READ_EVENTS:
                    client.loop_read()
                    while client.socket() is not None and tls is not None and tls.pending():
                        client.loop_read()
                    if client.socket() is None:
                        break
                # A socket known full is retried only once it says it can take more.
                if client.want_write() and (woken or not writing or ready & select.POLLOUT):
                    client.loop_write()
                    if client.socket() is None:
                        break
                if time.monotonic() >= next_misc:
                    client.loop_misc()
                    next_misc = time.monotonic() + MISC_INTERVAL_S
                    if client.socket() is None:
                        break
                self._flush()
        except Exception as exc:
            # A bug in paho or here: the connection is lost, the process lives on.
            log.exception("uplink network thread failed")
            self._flush()
            self._post(self._on_lost, ConnectionLost(f"connection failed ({exc!r})"))
        finally:
            self._flush()
            if client.socket() is not None:
                # Stopped, not disconnected: no DISCONNECT, so the broker publishes the will.
                with contextlib.suppress(OSError):
                    sock.close()
            wake_r.close()
            # With the loop gone nobody closes the other end, nor can wake us any more.
            if not self._post(self._on_thread_done) and self._wake_w is not None:
                self._wake_w.close()

    def _post(self, callback: Callable[..., None], *args: object) -> bool:
        """Network thread: run `callback(*args)` on the loop; False if the loop is gone."""
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody waits for this connection any more
            self._stopping = True
            return False
        return True

    def _flush(self) -> None:
        """Network thread: hand the PUBACKs read in this pass to the loop in one hop."""
        if self._acks:
            batch, self._acks = self._acks, []
            self._post(self._on_acks, batch)

    def _wake(self) -> None:
        """Loop thread: make the network thread look at paho's queue and `_stopping` now."""
        if self._wake_sent or self._wake_w is None:
            return
        self._wake_sent = True
        # The thread may have ended and closed its end (a lost link): nothing to wake.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # --- paho callbacks (network thread, or the connect thread for a write it made) -----------

    def _on_connect(
        self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, props: object
    ) -> None:
        self._flush()
        self._post(self._on_connack, reason, _limits(props))

    def _on_disconnect(
        self, _c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object
    ) -> None:
        # The PUBACKs read before the link went are delivered first.
        self._flush()
        self._post(self._on_lost, ConnectionLost(f"connection to the broker lost ({reason})"))

    def _on_publish(
        self, _c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object
    ) -> None:
        # paho holds its message lock here: record and return.
        refusal = f"broker refused the publish ({reason})" if reason.is_failure else None
        self._acks.append((mid, refusal, reason.value))

    # --- results on the loop thread -----------------------------------------------------------

    def _on_acks(self, batch: list[tuple[int, str | None, int]]) -> None:
        for mid, refusal, code in batch:
            fut = self._pending.pop(mid, None)
            if fut is None or fut.done():
                continue
            if refusal is None:
                fut.set_result(None)
            else:
                fut.set_exception(PublishRejected(refusal, code))

    def _on_connack(self, reason: ReasonCode, limits: BrokerLimits) -> None:
        if self._connack.done():
            return
        self.limits = limits
        if reason.is_failure:
            where = f"{self.settings.host}:{self.settings.port}"
            self._connack.set_exception(_connack_failure(reason, self.protocol, where))
        else:
            self._connack.set_result(None)

    def _on_lost(self, error: ConnectionLost) -> None:
        self._fail(error)

    def _on_thread_done(self) -> None:
        self._thread_done = True
        if self._thread is not None:
            # Posting this was the thread's last act: the join returns at once, and a closed
            # connection then holds no thread at all.
            self._thread.join(STOP_TIMEOUT_S)
        if self._wake_w is not None:
            self._wake_w.close()
            self._wake_w = None
        self._fail(ConnectionLost("connection closed"))  # a no-op if it failed already

    def _fail(self, error: ConnectionLost) -> None:
        if self._lost is None:
            self._lost = error
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
        if self._thread is not None and not self._thread_done:
            self._stopping = True
            self._wake()
            return  # `closed` resolves when the thread has ended (`_on_thread_done`)
        if not self.closed.done():
            self.closed.set_result(self._lost)

    async def _abort(self) -> None:
        """Drop the connection without a DISCONNECT (so the broker sends the will) and wait
        for its thread to end."""
        self._fail(ConnectionLost("connection aborted"))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.shield(self.closed)
        if not self.closed.done():
            # Starved, not stuck (its socket never blocks): a daemon, it ends on its own.
            log.warning("uplink network thread did not stop within %.0f s", STOP_TIMEOUT_S)
            assert self._lost is not None
            self.closed.set_result(self._lost)

    # --- public -------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._lost is None and not self.closed.done()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        """Send a QoS 1 PUBLISH; the future completes on its PUBACK."""
        if not self.is_open:
            raise NotConnected("not connected to the broker")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise NotConnected(f"publish not accepted by paho ({paho.error_string(info.rc)})")
        # Registered before the loop can run `_on_acks`, so a PUBACK read at once finds it.
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = fut
        self._wake()
        return fut

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def close(self, final: tuple[str, bytes] | None = None, *, retain: bool = True) -> None:
        """Optionally publish `final` (retained unless `retain` is False), then DISCONNECT;
        the broker drops the will. Returns once the network thread has ended and the socket
        is closed."""
        if self.is_open and final is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.publish(final[0], final[1], retain=retain)
        if self.is_open:
            self._client.disconnect()
            self._wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.shield(self.closed)
        if not self.closed.done():
            await self._abort()


def _limits(props: object) -> BrokerLimits:
    """The CONNACK properties the uplink keeps to (paho sets an attribute per property sent)."""
    size = getattr(props, "MaximumPacketSize", None)
    receive = getattr(props, "ReceiveMaximum", None)
    retain = getattr(props, "RetainAvailable", 1)
    return BrokerLimits(
        maximum_packet_size=size if isinstance(size, int) else None,
        receive_maximum=receive if isinstance(receive, int) else None,
        retain_available=bool(retain),
    )


def _ignore(_c: paho.Client, _u: object, _s: object) -> None:
    """paho's register-write callback: see `MqttConnection._attach`."""
