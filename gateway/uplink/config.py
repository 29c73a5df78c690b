"""`[upstream]` as the uplink uses it (DESIGN.md, Config). The config loader reads the TOML and
builds an `UplinkSettings`; this module owns only what is specific to the uplink: the URL
(`mqtts://` only, there is no plaintext mode) and the files TLS needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from gateway.uplink.errors import UplinkConfigError

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = ["DEFAULT_PORT", "DEFAULT_TOPIC_PREFIX", "UplinkSettings", "parse_url"]

DEFAULT_PORT: Final = 8883  # IANA's secure-mqtt port
DEFAULT_TOPIC_PREFIX: Final = "carebox/v1"
DEFAULT_KEEPALIVE_S: Final = 60  # a dead link is noticed within ~1.5x this (paho's PINGREQ)


def parse_url(url: str) -> tuple[str, int]:
    """`mqtts://host[:port]` -> (host, port). Anything else is refused, by name."""
    parts = urlsplit(url)
    if parts.scheme == "mqtt":
        raise UplinkConfigError(
            f"[upstream] url {url!r} is plaintext MQTT: Carebox only speaks TLS; "
            "use mqtts://host:8883"
        )
    if parts.scheme != "mqtts":
        raise UplinkConfigError(f"[upstream] url {url!r} must look like mqtts://host:8883")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise UplinkConfigError(f"[upstream] url {url!r} has a bad port number") from exc
    if not parts.hostname:
        raise UplinkConfigError(f"[upstream] url {url!r} has no host name")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise UplinkConfigError(
            f"[upstream] url {url!r}: only mqtts://host:port is supported (no path, "
            "query or credentials)"
        )
    return parts.hostname, port


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """Where and how to connect. `gateway_id` is the MQTT client id and the topic level."""

    url: str
    ca: Path
    cert: Path
    key: Path
    gateway_id: str
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    keepalive_s: int = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        parse_url(self.url)
        if not self.gateway_id or any(c in self.gateway_id for c in "/+#"):
            raise UplinkConfigError(
                f"gateway_id {self.gateway_id!r} cannot be an MQTT topic level "
                "(empty, or has / + #)"
            )
        if any(c in self.topic_prefix for c in "+#") or self.topic_prefix.endswith("/"):
            raise UplinkConfigError(
                f"[upstream] topic_prefix {self.topic_prefix!r} must be a plain topic "
                "without wildcards or a trailing /"
            )

    @classmethod
    def from_config(cls, config: Config) -> UplinkSettings:
        """From the loaded carebox.toml (`gateway.config.load_config`)."""
        up = config.upstream
        return cls(
            url=up.url,
            ca=up.ca,
            cert=up.cert,
            key=up.key,
            gateway_id=config.gateway_id,
            topic_prefix=up.topic_prefix,
        )

    @property
    def host(self) -> str:
        return parse_url(self.url)[0]

    @property
    def port(self) -> int:
        return parse_url(self.url)[1]

    def topic(self, leaf: str) -> str:
        """`<topic_prefix>/<gateway_id>/<leaf>`, leaf one of observations, status, events."""
        return f"{self.topic_prefix}/{self.gateway_id}/{leaf}"

    def check_files(self) -> None:
        """Each TLS file exists and is readable; the error names the key to fix."""
        for key, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if not path.is_file():
                raise UplinkConfigError(f"[upstream] {key} {str(path)!r} does not exist")
            try:
                path.read_bytes()
            except OSError as exc:
                raise UplinkConfigError(
                    f"[upstream] {key} {str(path)!r} cannot be read ({exc.strerror})"
                ) from exc
