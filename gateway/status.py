"""`carebox status`: what a technician or the fleet needs to know, and never a health value.

Reads the store read-only (safe beside the running service: SQLite WAL readers do not block
the writer) and the service's runtime status file (upstream state, clock trust)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.config import Config
from gateway.service import read_runtime_status
from gateway.uplink.cert_expiry import WARN_DAYS, days_between, not_after


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()


def gather(config: Config) -> dict[str, Any]:
    from gateway.store import Store

    now = datetime.now(UTC)
    status = Store.read_status(config.state_dir)
    stats = status.stats
    runtime = read_runtime_status(config) or {}
    upstream = runtime.get("upstream") or {}
    oldest = stats.oldest_waiting
    cert_end = not_after(config.upstream.cert)
    return {
        "gateway_id": config.gateway_id,
        "service_running": bool(runtime),
        "clock_trusted": runtime.get("clock_trusted"),
        "queue_depth": stats.queue_depth,
        "oldest_waiting_s": None if oldest is None else round((now - oldest).total_seconds()),
        "last_sync": upstream.get("last_sync") or _iso(stats.last_ack),
        "upstream": {
            "connected": bool(upstream.get("connected")),
            "last_error": upstream.get("last_error"),
            "error_layer": upstream.get("error_layer"),
            "certificate_expires": _iso(cert_end),
            "certificate_days_left": None if cert_end is None else days_between(now, cert_end),
            "certificate_expired": None if cert_end is None else cert_end <= now,
        },
        "store_bytes": stats.size_bytes,
        "quarantined": stats.quarantined,
        "devices": [
            {
                "address": d.address,
                "kind": d.kind,
                "name": d.name,
                "paired_at": _iso(d.paired_at),
                "last_contact": _iso(d.last_contact),
                "battery": d.battery,
            }
            for d in status.devices
        ],
    }


def _certificate(up: dict[str, Any]) -> str:
    expires, days = up["certificate_expires"], up["certificate_days_left"]
    if expires is None:
        return "not readable at [upstream] cert (not enrolled yet?)"
    if up["certificate_expired"]:
        return f"EXPIRED on {expires}: re-enroll the box"
    soon = " - re-enroll soon" if days < WARN_DAYS else ""
    return f"expires {expires} ({days} days){soon}"


def render(doc: dict[str, Any]) -> str:
    up = doc["upstream"]
    running = "running" if doc["service_running"] else "not running"
    clock = {True: "trusted", False: "NOT trusted (waiting for NTP)"}.get(
        doc["clock_trusted"], "unknown (service not running)"
    )
    lines = [
        f"gateway        {doc['gateway_id']} ({running})",
        f"clock          {clock}",
        f"queue          {doc['queue_depth']} waiting"
        + (f", oldest {doc['oldest_waiting_s']} s" if doc["oldest_waiting_s"] is not None else ""),
        f"last sync      {doc['last_sync'] or 'never'}",
        f"upstream       {'connected' if up['connected'] else 'not connected'}"
        + (f" - {up['last_error']}" if up["last_error"] else ""),
        f"certificate    {_certificate(up)}",
        f"devices        {len(doc['devices'])}",
    ]
    for d in doc["devices"]:
        battery = f"{d['battery']}%" if d["battery"] is not None else "-"
        lines.append(
            f"  {d['address']}  {d['kind']:<15} {d['name']:<24} "
            f"last contact {d['last_contact'] or 'never'}  battery {battery}"
        )
    return "\n".join(lines)
