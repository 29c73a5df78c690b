"""The uplink's errors. Each message is one line naming what failed and what to do.

    GatewayError
    └── UplinkError                   anything the uplink reports
        ├── UplinkConfigError         [upstream] unusable: mqtt:// URL, missing file; a ConfigError
        ├── NotConnected              publish while the link is down (nothing was sent)
        ├── ConnectionLost            the link dropped; what was in flight goes back to the queue
        ├── PublishRejected           an MQTT 5 PUBACK with a failure reason code
        └── ConnectFailed             one connection attempt failed; `kind` says how to retry
            ├── NetworkUnreachable    DNS, TCP refused/unreachable, timeout: transient
            ├── TlsError              the TLS handshake failed
            │   ├── ServerCertificateUntrusted   chain not from [upstream] ca, or wrong host
            │   ├── ClientCertificateRejected    broker refused our certificate
            │   ├── ClockNotSynchronized         a validity failure while our clock is untrusted
            │   └── NotTls                       the port speaks plaintext
            └── BrokerRejected        CONNACK refused (bad credentials, not authorized, ...)

`ConnectFailed.kind` drives the reconnect policy (`backoff.py`): TRANSIENT backs off from 1 s,
REJECTED jumps to the maximum and records an event: retrying a refused certificate every second
fixes nothing and hammers the broker (LESSONS.md L9.3).
"""

from __future__ import annotations

import enum

from gateway.errors import ConfigError, GatewayError

__all__ = [
    "BrokerRejected",
    "ClientCertificateRejected",
    "ClockNotSynchronized",
    "ConnectFailed",
    "ConnectionLost",
    "FailureKind",
    "NetworkUnreachable",
    "NotConnected",
    "NotTls",
    "PublishRejected",
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
    """The broker answered a publish with a failure reason code (MQTT 5)."""


class ConnectFailed(UplinkError):
    """One connection attempt failed."""

    kind: FailureKind = FailureKind.TRANSIENT
    layer: str = "network"  # for `carebox status` (LESSONS.md L9.4)


class NetworkUnreachable(ConnectFailed):
    kind = FailureKind.TRANSIENT
    layer = "network"


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


class BrokerRejected(ConnectFailed):
    kind = FailureKind.REJECTED
    layer = "broker"
