"""MQTT uplink: the store's waiting readings to the broker as FHIR Bundles, over mutual TLS.

Layout
    config.py   `UplinkSettings` from [upstream] (+ gateway_id); only mqtts:// URLs exist
    errors.py   the error tree (drawn there); every message one line naming what to do
    client.py   the ONLY module importing paho: `MqttConnection`, one connection, paho's
                socket on a network thread of its own, a QoS 1 publish = a future done
                (on the loop) on its PUBACK
    backoff.py  reconnect policy: 1 s .. 5 min, exponential with jitter; refusals to the max
    cert_expiry.py  when the client certificate and the CA end: an event daily from 30 days
                before (L9.2), read at start and once a day while the clock is trusted
    outbox.py   `Outbox` Protocol: what the uplink calls on the store
    service.py  `Uplink`: reconnect loop + per-connection session (status, events, drain)
    devpki.py   throwaway CA/broker/client certificates (demo, tests, bench; never production)
    broker.py   `LocalBroker`: a local mosquitto with mTLS on a free loopback port

Topics: `<prefix>/<gateway_id>/observations` (QoS 1, one Bundle per message),
`/status` (retained JSON; the offline one is the will), `/events` (store events, by id).

Invariants
- A reading is acked in the store only on the PUBACK of the message that carried it; a
  return code, paho's queue or a socket write never count (LESSONS.md L1.2).
- One `Uplink` owns publishing; a reading is in flight in at most one message (L5.6).
- At a disconnect every in-flight reading is released at once and republished after the
  reconnect with the same identifiers (the mapper derives them from the stored identity);
  a crash leaves them to the store's lease expiry (`service.LEASE_S`).
- TLS 1.2+, CA and host name verified, client certificate always; there is no switch.
- A refusal (certificate, ACL, wrong port, clock) backs off to 5 min and records one store
  event per distinct error; it never spins and never gives up (L9.3).

Gotchas
- paho's `connect()` blocks (TCP + TLS handshake): it runs in a worker thread; then one
  network thread per connection does all its socket I/O (one SSL object, one thread), and
  paho's callbacks hand their results to the loop. TLS 1.3 delivers a refused client
  certificate after the handshake, as an alert on the first read:
  `client._ObservedSSLSocket` keeps it so the error names the cause.
- A fresh paho Client per connection: paho must never resend on its own behind the store.
- Decrypted bytes buffered in the SSL object do not make the socket readable: drain
  `pending()`.
- Wire `Uplink.wake()` to the store's commits (latency) and to clock/network changes.
"""

from gateway.uplink.backoff import Backoff
from gateway.uplink.config import UplinkSettings
from gateway.uplink.errors import (
    BrokerRejected,
    BrokerUnavailable,
    ClientCertificateRejected,
    ClockNotSynchronized,
    ConnectFailed,
    ConnectionLost,
    HandshakeCut,
    NetworkUnreachable,
    NotConnected,
    NotTls,
    PublishRejected,
    RetainUnsupported,
    ServerCertificateUntrusted,
    TlsError,
    UplinkConfigError,
    UplinkError,
)
from gateway.uplink.outbox import Outbox
from gateway.uplink.service import EventKind, Uplink, UplinkState

__all__ = [
    "Backoff",
    "BrokerRejected",
    "BrokerUnavailable",
    "ClientCertificateRejected",
    "ClockNotSynchronized",
    "ConnectFailed",
    "ConnectionLost",
    "EventKind",
    "HandshakeCut",
    "NetworkUnreachable",
    "NotConnected",
    "NotTls",
    "Outbox",
    "PublishRejected",
    "RetainUnsupported",
    "ServerCertificateUntrusted",
    "TlsError",
    "Uplink",
    "UplinkConfigError",
    "UplinkError",
    "UplinkSettings",
    "UplinkState",
]
