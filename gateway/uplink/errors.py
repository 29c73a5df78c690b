"""The uplink's errors. Each message is one line naming what failed and what to do.

    GatewayError
    └── UplinkError                   anything the uplink reports
        ├── UplinkConfigError         [upstream] unusable: mqtt:// URL, missing file; a ConfigError
        ├── NotConnected              publish while the link is down (nothing was sent)
        ├── ConnectionLost            the link dropped; what was in flight goes back to the queue
        ├── PublishRejected           an MQTT 5 PUBACK with a failure reason code
        └── ConnectFailed             one connection attempt failed; `kind` says how to retry
            ├── NetworkUnreachable    DNS, TCP refused/unreachable, timeout: transient, and
            │                         the uplink probes TCP to retry as soon as it answers
            ├── BrokerUnavailable     the broker answered but cannot take the box now (busy,
            │                         quota, closed before CONNACK): transient, no probe
            ├── RetainUnsupported     CONNACK "retain not supported": reconnect without it
            ├── TlsError              the TLS handshake failed
            │   ├── ServerCertificateUntrusted   chain not from [upstream] ca, or wrong host
            │   ├── ClientCertificateRejected    broker refused our certificate
            │   ├── ClockNotSynchronized         a validity failure while our clock is untrusted
            │   ├── NotTls                       the port speaks plaintext
            │   └── HandshakeCut                 closed mid-handshake: a broker (or the proxy
            │                                    before it) going away, or a plaintext port
            └── BrokerRejected        CONNACK refused (bad credentials, not authorized, ...),
                                      or a publish refused (not authorized on the topic, ...)

`ConnectFailed.kind` drives the reconnect policy (`backoff.py`): TRANSIENT backs off from 1 s,
REJECTED jumps to the maximum and records an event: retrying a refused certificate every second
fixes nothing and hammers the broker (LESSONS.md L9.3).
"""

from __future__ import annotations

import enum

from gateway.errors import ConfigError, GatewayError

__all__ = [
    "BrokerRejected",
    "BrokerUnavailable",
    "ClientCertificateRejected",
    "ClockNotSynchronized",
    "ConnectFailed",
    "ConnectionLost",
    "FailureKind",
    "HandshakeCut",
    "NetworkUnreachable",
    "NotConnected",
    "NotTls",
    "PublishRejected",
    "RetainUnsupported",
    "ServerCertificateUntrusted",
    "TlsError",
    "UplinkConfigError",
    "UplinkError",
]


class FailureKind(enum.Enum):
    TRANSIENT = "transient"  # the network or the broker is away: retry soon, back off gently
    REJECTED = "rejected"  # the broker or TLS said no: nothing changes until someone acts


class UplinkError(GatewayError):
    """Root of the uplink's errors."""


class UplinkConfigError(UplinkError, ConfigError):
    """The [upstream] configuration cannot be used."""


class NotConnected(UplinkError):
    """Publish attempted while not connected; nothing was sent."""


class ConnectionLost(UplinkError):
    """The connection dropped before the PUBACK: the message may or may not have arrived."""


class PublishRejected(UplinkError):
    """The broker answered a publish with a failure reason code (MQTT 5); `code` is it."""

    def __init__(self, message: str, code: int = 0x80) -> None:
        super().__init__(message)
        self.code = code


class ConnectFailed(UplinkError):
    """One connection attempt failed."""

    kind: FailureKind = FailureKind.TRANSIENT
    layer: str = "network"  # for `carebox status` (LESSONS.md L9.4)


class NetworkUnreachable(ConnectFailed):
    """No TCP answer: `layer` is "dns" when the name did not resolve, "tcp" when the broker's
    address did not answer or refused, "network" when the link dropped (LESSONS.md L9.4)."""

    kind = FailureKind.TRANSIENT
    layer = "network"

    def __init__(self, message: str, *, layer: str = "network") -> None:
        super().__init__(message)
        self.layer = layer


class BrokerUnavailable(ConnectFailed):
    kind = FailureKind.TRANSIENT
    layer = "broker"


class RetainUnsupported(ConnectFailed):
    kind = FailureKind.TRANSIENT
    layer = "broker"


class TlsError(ConnectFailed):
    kind = FailureKind.REJECTED
    layer = "tls"


class ServerCertificateUntrusted(TlsError):
    layer = "server certificate"


class ClientCertificateRejected(TlsError):
    layer = "client certificate"


class ClockNotSynchronized(TlsError):
    layer = "clock"


class NotTls(TlsError):
    layer = "tls"


class HandshakeCut(TlsError):
    """Closed before the handshake ended, without a TLS alert: what a broker going away behind
    a proxy or load balancer looks like, and what a plaintext port does too. Transient; the
    uplink calls it a refusal only once it repeats (`service.HANDSHAKE_CUTS_TO_REFUSAL`)."""

    kind = FailureKind.TRANSIENT
    layer = "tls"


class BrokerRejected(ConnectFailed):
    kind = FailureKind.REJECTED
    layer = "broker"
