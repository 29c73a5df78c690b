"""The one module that imports `cryptography`: sealing records, wrapping keys, KEK providers.

Key hierarchy::

    KEK (32 bytes, from a provider; never stored in the database)
     ├── wraps the index key  (HMAC-SHA256 key: reading identity -> row key, stable for the
     │                         database's life so dedup survives data-key rotation)
     └── wraps data keys      (AES-256-GCM; the newest seals new records, older ones are kept
                               until no record sealed with them remains)

Providers: ``file`` keeps a random KEK in ``<state_dir>/keys/store.kek`` (0600, directory
0700); ``rpi-otp`` derives it with HKDF-SHA256 from the Raspberry Pi 4/5 OTP device private key
(read with ``rpi-otp-private-key``), so a card taken out of its box opens nowhere else. The OTP
reader is injectable for tests.

Random 96-bit nonces: NIST SP 800-38D bounds one key to 2**32 random-nonce messages; rotate long
before (a box stores a few readings a day, a bench a few million).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
from binascii import hexlify
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.store.errors import StoreError, TamperedRecord, WrongKey

__all__ = [
    "KEY_LEN",
    "SEAL_FORMAT",
    "SEAL_OVERHEAD",
    "FileKek",
    "KekProvider",
    "RowKeyer",
    "RpiOtpKek",
    "Sealer",
    "kek_provider",
    "malformed_aad",
    "new_key",
    "outbox_aad_head",
    "read_rpi_otp_key",
    "row_key",
    "unwrap_key",
    "wrap_key",
]

KEY_LEN: Final = 32
NONCE_LEN: Final = 12
TAG_LEN: Final = 16
SEAL_OVERHEAD: Final = NONCE_LEN + TAG_LEN
SEAL_FORMAT: Final = 1
"""Version of the sealed envelope (nonce, ciphertext, tag; associated data
`outbox_aad_head(key_id) + row key`), bound into the associated data. Schema migrations and
plaintext layouts (records.py) do not change it, so records sealed by any earlier Carebox
still open."""
_SHA256_BLOCK: Final = 64
ROW_KEY_LEN: Final = 16  # 128 bits: collisions need ~2**64 readings
OTP_READ_TIMEOUT_S: Final = 10.0  # vcmailbox answers in milliseconds; a hang means no firmware
_KEK_INFO: Final = b"carebox store KEK v1"
_KEK_SALT: Final = b"carebox/rpi-otp"


def new_key() -> bytes:
    return os.urandom(KEY_LEN)


def _wrap_aad(purpose: str, key_id: int) -> bytes:
    return f"carebox-key|{purpose}|{key_id}".encode()


def wrap_key(kek: bytes, purpose: str, key_id: int, key: bytes) -> bytes:
    """Seal a data or index key under the KEK, bound to its purpose and id."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(kek).encrypt(nonce, key, _wrap_aad(purpose, key_id))


def unwrap_key(kek: bytes, purpose: str, key_id: int, wrapped: bytes) -> bytes:
    try:
        key = AESGCM(kek).decrypt(
            wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], _wrap_aad(purpose, key_id)
        )
    except InvalidTag as exc:
        raise WrongKey(
            f"the store's {purpose} key {key_id} does not open with this key-encryption key: "
            "wrong key file or wrong box; restore the right key (nothing was changed)"
        ) from exc
    if len(key) != KEY_LEN:
        raise WrongKey(f"the store's {purpose} key {key_id} has {len(key)} bytes, not {KEY_LEN}")
    return key


def row_key(index_key: bytes, identity: str) -> bytes:
    """The keyed hash that stands for a reading in the database (row key and tombstone): the
    identity itself hashes device, time and value, so storing it bare would let anyone with the
    file confirm a guessed blood pressure."""
    return hmac.digest(index_key, identity.encode(), "sha256")[:ROW_KEY_LEN]


class RowKeyer:
    """`row_key` for one index key, with HMAC's two padded key blocks hashed once (RFC 2104:
    H(K^opad || H(K^ipad || m))): two SHA-256 state copies per reading instead of four
    compressions of key material; the same bytes as `row_key`."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, index_key: bytes) -> None:
        if len(index_key) > _SHA256_BLOCK:
            index_key = hashlib.sha256(index_key).digest()
        block = index_key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, identity: str) -> bytes:
        inner = self._inner.copy()
        inner.update(identity.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:ROW_KEY_LEN]

    def of_digests(self, digests: Iterable[bytes]) -> list[bytes]:
        """The row key of each identity given as its bytes (the hex of which is the identity
        keyed): the store's add path, which holds identities in binary."""
        inner0, outer0 = self._inner, self._outer
        out = []
        for digest in digests:
            inner = inner0.copy()
            inner.update(hexlify(digest))
            outer = outer0.copy()
            outer.update(inner.digest())
            out.append(outer.digest()[:ROW_KEY_LEN])
        return out


def malformed_aad(key_id: int, record: int, device: str, characteristic: int) -> bytes:
    """Associated data of a malformed value's record: its row, device and characteristic, so
    the bytes cannot be passed off as another device's or moved to another row."""
    return b"carebox-malformed|%d|%d|%d|%s|%d" % (
        SEAL_FORMAT,
        key_id,
        record,
        device.encode(),
        characteristic,
    )


def outbox_aad_head(key_id: int) -> bytes:
    """Associated data of an outbox record is this plus its row key: envelope version, key id
    and row key, so a ciphertext moved to another row, or relabelled with another key, fails
    its tag."""
    return b"carebox-outbox|%d|%d|" % (SEAL_FORMAT, key_id)


class Sealer:
    """AES-256-GCM under one data key; one `AESGCM` object reused (PERFORMANCE.md)."""

    __slots__ = ("_aead", "aad_head", "key", "key_id")

    def __init__(self, key_id: int, key: bytes) -> None:
        self.key_id = key_id
        self.key = key  # handed with sealed leases to the rendering worker (sealed.py)
        self.aad_head = outbox_aad_head(key_id)
        self._aead = AESGCM(key)

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def seal_many(self, items: list[tuple[bytes, bytes]]) -> list[bytes]:
        """`seal` for each (aad, plaintext), the fresh random nonces drawn in one read of the
        OS's random source (one syscall per batch, not per record)."""
        nonces = os.urandom(NONCE_LEN * len(items))
        encrypt = self._aead.encrypt
        out = []
        for i, (aad, plaintext) in enumerate(items):
            nonce = nonces[i * NONCE_LEN : (i + 1) * NONCE_LEN]
            out.append(nonce + encrypt(nonce, plaintext, aad))
        return out

    def open(self, aad: bytes, blob: bytes) -> bytes:
        if len(blob) < SEAL_OVERHEAD:
            raise TamperedRecord(f"sealed record truncated to {len(blob)} bytes")
        try:
            return self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad)
        except InvalidTag as exc:
            raise TamperedRecord("record fails its AES-GCM tag") from exc


class KekProvider(Protocol):
    name: str

    def load(self, *, create: bool) -> bytes:
        """The KEK; `create` allows making one (only for a store with no keys yet)."""
        ...


class FileKek:
    """A random KEK in a 0600 file. Never overwritten: a missing file for a store that has keys
    is `WrongKey`, not a fresh key."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, create: bool) -> bytes:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            if not create:
                raise WrongKey(
                    f"key file {self.path} is missing but the store holds keys: restore it "
                    "(nothing was changed)"
                ) from None
            return self._create()
        if len(data) != KEY_LEN:
            raise WrongKey(f"key file {self.path} has {len(data)} bytes, not {KEY_LEN}")
        return data

    def _create(self) -> bytes:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        key = new_key()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        # link, not rename: never replaces a key file another process wrote meanwhile
        try:
            os.link(tmp, self.path)
        finally:
            tmp.unlink()
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return self.path.read_bytes()


def read_rpi_otp_key() -> bytes:
    """The 256-bit OTP device private key of a Raspberry Pi 4/5 via `rpi-otp-private-key`."""
    tool = shutil.which("rpi-otp-private-key")
    if tool is None:
        raise StoreError(
            "key_provider rpi-otp needs rpi-otp-private-key (Raspberry Pi OS, Pi 4/5); "
            'use key_provider = "file" elsewhere'
        )
    try:
        out = subprocess.run(  # noqa: S603 - fixed tool path, no shell, no user input
            [tool], capture_output=True, text=True, check=True, timeout=OTP_READ_TIMEOUT_S
        ).stdout.strip()
        key = bytes.fromhex(out)
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        raise StoreError(f"cannot read the OTP device key with {tool}: {exc}") from exc
    return key


class RpiOtpKek:
    """KEK = HKDF-SHA256(OTP device private key): tied to the board, nothing on the card."""

    name = "rpi-otp"

    def __init__(self, reader: Callable[[], bytes] = read_rpi_otp_key) -> None:
        self._reader = reader

    def load(self, *, create: bool) -> bytes:
        otp = self._reader()
        if len(otp) != KEY_LEN or not any(otp):
            raise StoreError(
                "the Raspberry Pi OTP device key is not programmed (all zeros or wrong size): "
                'program it with `rpi-otp-private-key -w` or use key_provider = "file"'
            )
        return HKDF(hashes.SHA256(), KEY_LEN, _KEK_SALT, _KEK_INFO).derive(otp)


def kek_provider(
    name: str, state_dir: Path, *, otp_reader: Callable[[], bytes] | None = None
) -> KekProvider:
    if name == "file":
        return FileKek(state_dir / "keys" / "store.kek")
    if name == "rpi-otp":
        return RpiOtpKek(otp_reader or read_rpi_otp_key)
    raise StoreError(f'[store] key_provider {name!r} is unknown: use "file" or "rpi-otp"')
