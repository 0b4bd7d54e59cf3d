"""The smart robot's media: a photo or file it is sent arrives as a URL
(valid five minutes) to the file encrypted with AES-256-CBC.

The key is the message's own `aeskey` (each URL has its own; long-connection
mode always sends it), else the robot's callback EncodingAESKey. Key =
base64 of the key text (padded), IV = its first 16 bytes, PKCS#7 padding to a
multiple of 32 bytes (doc 100719; the official SDK WecomTeam/aibot-node-sdk,
`src/crypto.ts`, which unpads by hand for that reason). `encrypt_media` is the
inverse, for the emulator.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 32


class MediaDecryptError(Exception):
    """The key is unusable or the file does not decrypt with it."""


def media_key(aeskey: str) -> bytes:
    """The 32-byte AES key a robot's `aeskey` (or EncodingAESKey) names."""
    text = aeskey.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MediaDecryptError("the aeskey is not base64") from None
    if len(key) != 32:
        raise MediaDecryptError(f"the aeskey is {len(key)} bytes, not 32")
    return key


def decrypt_media(encrypted: bytes, aeskey: str) -> bytes:
    """The file in a robot media download."""
    key = media_key(aeskey)
    if not encrypted or len(encrypted) % 16:
        raise MediaDecryptError("the download is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(encrypted) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK or pad > len(plain) or plain[-pad:] != bytes([pad]) * pad:
        raise MediaDecryptError("bad padding: the aeskey does not fit the file")
    return plain[:-pad]


def encrypt_media(data: bytes, aeskey: str) -> bytes:
    """`data` encrypted as WeChat Work serves robot media (for the emulator)."""
    key = media_key(aeskey)
    pad = _BLOCK - len(data) % _BLOCK
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


def new_aeskey() -> str:
    """A fresh per-URL aeskey, as WeChat Work hands out (base64 of 32 bytes)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()
