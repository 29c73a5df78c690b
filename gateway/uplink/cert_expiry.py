"""When the gateway's TLS certificates stop being valid, read ahead of time (LESSONS.md L9.2).

Why: a client certificate that expires unnoticed turns into a box that stops delivering one
night, with the broker refusing it and nobody on site. The uplink reads the dates of its client
certificate and of the CA it trusts when it starts and once a day, and while either ends within
`WARN_DAYS` records an event (and logs a warning) each day, so the fleet sees it weeks before
and a technician re-enrolls the box in time (renewal keeps the queue).

The days left are counted on the gateway's clock, so nothing is said while that clock is not
trusted: a box that booted in 1970 would report every certificate as not yet valid, one that
booted far ahead, as expired. A file that cannot be read or parsed says nothing here either:
the connection attempt names that problem (`UplinkSettings.check_files`, the TLS errors).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509

__all__ = [
    "CHECK_INTERVAL_S",
    "WARN_DAYS",
    "Certificate",
    "Expiry",
    "days_between",
    "expiring",
    "not_after",
    "validity",
]

WARN_DAYS: Final = 30  # room for a technician's visit, or a remote re-enrollment
CHECK_INTERVAL_S: Final = 24 * 3600.0  # daily, and at start
UNTRUSTED_RECHECK_S: Final = 60.0  # how soon to look again once the clock may be trusted


class Certificate(enum.Enum):
    CLIENT = "client certificate"  # [upstream] cert: the box's identity
    CA = "CA"  # [upstream] ca: what the broker's certificate must chain to


@dataclass(frozen=True, slots=True)
class Expiry:
    """One certificate that ends within the warning window (or has ended)."""

    certificate: Certificate
    path: Path
    not_after: datetime  # UTC
    days_left: int  # whole days between now and `not_after`: minus the days since, once ended
    expired: bool

    def message(self) -> str:
        """One line for the log: what, when, and what to do."""
        when = self.not_after.strftime("%Y-%m-%d %H:%M UTC")
        if self.expired:
            return (
                f"the {self.certificate.value} {str(self.path)!r} expired on {when}: "
                "the broker will refuse this box until it is re-enrolled"
            )
        return (
            f"the {self.certificate.value} {str(self.path)!r} expires on {when} "
            f"({self.days_left} days left): re-enroll the box before then"
        )


def validity(path: Path) -> tuple[datetime, datetime] | None:
    """(start, end) of validity (UTC) of the first certificate in the PEM file at `path`, or
    None when it cannot be read as one."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def not_after(path: Path) -> datetime | None:
    """The end of validity (UTC) of the certificate at `path` (see `validity`)."""
    dates = validity(path)
    return None if dates is None else dates[1]


def expiring(
    certificates: Iterable[tuple[Certificate, Path]], now: datetime, warn_days: int = WARN_DAYS
) -> list[Expiry]:
    """Those of `certificates` that end within `warn_days` of `now` (an aware datetime), or
    have ended, in the order given. One not valid yet is left to the connection attempt,
    which names that (its days left would mislead)."""
    out: list[Expiry] = []
    for certificate, path in certificates:
        dates = validity(path)
        if dates is None or dates[0] > now:
            continue
        end = dates[1]
        days_left = days_between(now, end)
        if end <= now or days_left < warn_days:
            out.append(Expiry(certificate, path, end, days_left, expired=end <= now))
    return out


def days_between(now: datetime, end: datetime) -> int:
    """Whole days from `now` to `end`, counted toward zero (-1: ended a day ago or more)."""
    return int((end - now).total_seconds() / 86400)
