"""MQTT uplink: readings from the store's outbox to the broker as FHIR Bundles, over mutual TLS.

(Architecture note in progress; see the modules.)
"""
