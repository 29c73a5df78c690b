"""The demo's witness at the broker: a separate MQTT client with its own certificate that
subscribes to the gateway's observations and counts what really arrived, so the demo's last
line is measured upstream, not taken from the gateway's own bookkeeping."""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.fhir.codes import BODY_FAT, BODY_WEIGHT, BP_PANEL, GLUCOSE_BY_TYPE, GLUCOSE_GENERIC
from gateway.uplink.broker import LocalBroker
from gateway.uplink.devpki import DevPki

PHD_IDENTIFIER: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
# One primary Observation per reading: the BP panel, body weight, body composition's fat
# percentage, and the glucose concentration codes.
PRIMARY_CODES: Final = frozenset(
    {str(c.mdc) for c in (BP_PANEL, BODY_WEIGHT, BODY_FAT)}
    | {str(c.mdc) for c in (GLUCOSE_GENERIC, *GLUCOSE_BY_TYPE.values())}
)
KEEPALIVE_S: Final = 10
RECONNECT_S: Final = 1  # the witness comes back fast after the scripted outage
SESSION_EXPIRY_S: Final = 3600


@dataclass
class Observer:
    broker: LocalBroker
    pki: DevPki
    topic: str
    messages: int = 0
    identifiers: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> None:
        issued = self.pki.client_for("carebox-demo-observer")
        ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert_path))
        ctx.load_cert_chain(str(issued.cert_path), str(issued.key_path))
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="carebox-demo-observer", protocol=mqtt.MQTTv5
        )
        client.tls_set_context(ctx)
        client.reconnect_delay_set(min_delay=RECONNECT_S, max_delay=RECONNECT_S)
        client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        client.on_message = self._on_message
        # A persistent session: the broker keeps what arrives while the witness is away.
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect(
            "localhost", self.broker.tls_port, KEEPALIVE_S, clean_start=False, properties=props
        )
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            bundle = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            self.messages += 1
            for ident in primary_identifiers(bundle):
                self.identifiers[ident] += 1

    def delivered(self) -> int:
        with self._lock:
            return len(self.identifiers)

    def resent(self) -> int:
        """Deliveries of an identifier already seen: harmless, the backend's ifNoneExist drops
        them (a PUBACK lost in an outage makes the gateway send the same record again)."""
        with self._lock:
            return sum(n - 1 for n in self.identifiers.values())


def primary_identifiers(bundle: Any) -> list[str]:
    found: list[str] = []
    for entry in bundle.get("entry", []) if isinstance(bundle, dict) else []:
        res = entry.get("resource", {})
        if res.get("resourceType") != "Observation":
            continue
        codes = {c.get("code", "") for c in res.get("code", {}).get("coding", [])}
        if not codes & PRIMARY_CODES:
            continue
        found.extend(
            ident["value"]
            for ident in res.get("identifier", [])
            if ident.get("system") == PHD_IDENTIFIER
        )
    return found
