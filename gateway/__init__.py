"""The Carebox service: BLE central, encrypted store, FHIR mapping, MQTT uplink, CLI.

Layout
    cli.py        the `carebox` console script (also `python -m gateway`)
    errors.py     root of the gateway's error tree
    system_id.py  the gateway's own EUI-64 (its PhgDevice's SYSID): chosen once, kept
    store/        encrypted store-and-forward outbox over aiosqlite
    fhir/         Reading -> FHIR R4 transaction Bundle (HL7 PHD IG)
    uplink/       MQTT 5 / 3.1.1 over mutual TLS, QoS 1, ack-gated pruning
    ble/          BLE central over bleak, and the simulated bleak backend
"""

__version__ = "0.1.0"
