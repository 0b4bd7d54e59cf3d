"""Callback crypto of WeChat Work, for both endpoints the bot serves.

The self-built app and the smart robot share one scheme (WECOM.md, "Callback
crypto"): a SHA-1 signature over the sorted token, timestamp, nonce and
ciphertext, and AES-256-CBC over `16 random bytes + length + message + receive
id`. They differ in the receive id (the CorpID for the app, empty for the
robot) and in the envelope (XML for the app, JSON for the robot).

wechatpy does the cipher; this module adds what it lacks: a constant-time
signature check, a timestamp window against replays, one exception type for
every way a callback can be bad, the robot's JSON reply envelope, and the
inverse direction (building callbacks) for the emulator and the tests.
"""

from __future__ import annotations

import binascii
import hmac
import json
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict  # wechatpy's own XML parser; entities are disabled by default
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import WeChatException
from wechatpy.utils import WeChatSigner


class CallbackRefused(Exception):
    """A callback that must be refused. `status` is the HTTP status to answer
    (403 when it may not come from WeChat Work, 400 when it is garbled) and
    `reason` a short English phrase for the log and the response body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignedQuery:
    """The query parameters WeChat Work signs a callback with."""

    msg_signature: str
    timestamp: str
    nonce: str

    def as_params(self) -> dict[str, str]:
        """The query string of a callback request."""
        return {"msg_signature": self.msg_signature, "timestamp": self.timestamp,
                "nonce": self.nonce}


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """The SHA-1 hex signature WeChat Work puts on a callback or a reply."""
    signer = WeChatSigner()
    signer.add_data(token, timestamp, nonce, encrypted)
    return signer.signature


class CallbackCipher:
    """Verifies, decrypts and builds the callbacks of one endpoint.

    `receive_id` is the CorpID for the self-built app and "" for the smart
    robot; `max_skew` is how far (seconds) a callback's timestamp may be from
    `now` before it counts as a replay."""

    def __init__(self, token: str, aes_key: str, receive_id: str, *, max_skew: int = 300) -> None:
        if not token:
            raise ValueError("the callback Token is empty")
        try:
            crypto = WeChatCrypto(token, aes_key, receive_id)
        except (AssertionError, binascii.Error, ValueError):
            raise ValueError(
                "the EncodingAESKey must be the 43 characters shown in the WeChat Work console"
            ) from None
        self._key = crypto.key
        self.token = token
        self.receive_id = receive_id
        self.max_skew = max_skew

    # -- receiving ---------------------------------------------------------

    def verify_url(self, query: SignedQuery, echostr: str, *, now: datetime) -> str:
        """The plain text of a URL-check `echostr`, once its signature and timestamp hold."""
        return self._open(query, echostr, now=now)

    def decrypt_robot(self, query: SignedQuery, body: bytes, *, now: datetime) -> str:
        """The decrypted JSON text of a smart-robot callback body `{"encrypt": ...}`."""
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):
            raise CallbackRefused(400, "body is not JSON") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("encrypt"), str):
            raise CallbackRefused(400, "body has no encrypt field")
        return self._open(query, envelope["encrypt"], now=now)

    def decrypt_app(self, query: SignedQuery, body: bytes, *, now: datetime) -> str:
        """The decrypted XML text of a self-built-app callback body `<xml><Encrypt>...`."""
        encrypted = xml_field(body, "Encrypt")
        if encrypted is None:
            raise CallbackRefused(400, "body is not XML with an Encrypt field")
        return self._open(query, encrypted, now=now)

    def _open(self, query: SignedQuery, encrypted: str, *, now: datetime) -> str:
        self._check_time(query.timestamp, now)
        try:
            expected = signature(self.token, query.timestamp, query.nonce, encrypted).encode()
            given = query.msg_signature.encode()
        except UnicodeError:  # lone surrogates from a percent-decoded query
            raise CallbackRefused(400, "query is not valid text") from None
        if not hmac.compare_digest(expected, given):
            raise CallbackRefused(403, "signature mismatch")
        try:
            return PrpCrypto(self._key).decrypt(encrypted, self.receive_id)
        except WeChatException:
            raise CallbackRefused(403, "wrong receive id") from None
        # The cipher's own failures, one per kind of garbage: bad base64, a length
        # that is no multiple of the block, padding or length prefix out of range,
        # bytes that are not UTF-8.
        except (ValueError, TypeError, IndexError, struct.error):
            raise CallbackRefused(400, "ciphertext does not decrypt") from None

    def _check_time(self, timestamp: str, now: datetime) -> None:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise CallbackRefused(400, "timestamp is not a number")
        if abs(int(timestamp) - now.timestamp()) > self.max_skew:
            raise CallbackRefused(403, "timestamp outside the allowed window")

    # -- sending -----------------------------------------------------------

    def seal(self, plaintext: str, *, timestamp: str, nonce: str) -> tuple[str, SignedQuery]:
        """Encrypt and sign `plaintext`: the ciphertext and its signed query."""
        encrypted = PrpCrypto(self._key).encrypt(plaintext, self.receive_id).decode()
        sign = signature(self.token, timestamp, nonce, encrypted)
        return encrypted, SignedQuery(msg_signature=sign, timestamp=timestamp, nonce=nonce)

    def robot_reply(self, reply: dict[str, Any], *, timestamp: str, nonce: str) -> dict[str, str]:
        """The smart robot's encrypted passive reply `{"encrypt", "msgsignature",
        "timestamp", "nonce"}` (wechatpy only builds the app's XML one)."""
        plaintext = json.dumps(reply, ensure_ascii=False)
        encrypted, query = self.seal(plaintext, timestamp=timestamp, nonce=nonce)
        return {"encrypt": encrypted, "msgsignature": query.msg_signature,
                "timestamp": timestamp, "nonce": nonce}

    def open_robot_reply(self, envelope: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        """The inverse of `robot_reply`, as WeChat Work reads the bot's answer."""
        query = SignedQuery(
            msg_signature=str(envelope.get("msgsignature", "")),
            timestamp=str(envelope.get("timestamp", "")),
            nonce=str(envelope.get("nonce", "")),
        )
        return json.loads(self._open(query, str(envelope.get("encrypt", "")), now=now))

    def robot_callback(
        self, message: dict[str, Any], *, timestamp: str, nonce: str | None = None
    ) -> tuple[SignedQuery, bytes]:
        """A smart-robot callback as WeChat Work posts it: query and JSON body."""
        plaintext = json.dumps(message, ensure_ascii=False)
        encrypted, query = self.seal(plaintext, timestamp=timestamp, nonce=nonce or new_nonce())
        return query, json.dumps({"encrypt": encrypted}).encode()

    def app_callback(
        self, xml: str, *, agent_id: int | None, timestamp: str, nonce: str | None = None
    ) -> tuple[SignedQuery, bytes]:
        """A self-built-app callback as WeChat Work posts it: query and XML body."""
        encrypted, query = self.seal(xml, timestamp=timestamp, nonce=nonce or new_nonce())
        body = (
            f"<xml><ToUserName>{cdata(self.receive_id)}</ToUserName>"
            f"<AgentID>{cdata(str(agent_id or ''))}</AgentID>"
            f"<Encrypt>{cdata(encrypted)}</Encrypt></xml>"
        )
        return query, body.encode()

    def url_check(self, echo: str, *, timestamp: str, nonce: str | None = None) -> dict[str, str]:
        """The query of a URL-check GET whose echostr decrypts to `echo`."""
        encrypted, query = self.seal(echo, timestamp=timestamp, nonce=nonce or new_nonce())
        return {**query.as_params(), "echostr": encrypted}


def new_nonce() -> str:
    """A random nonce like the ones WeChat Work sends."""
    return secrets.token_hex(8)


def cdata(text: str) -> str:
    """`text` as an XML CDATA section (a `]]>` inside is split across two)."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_field(body: bytes | str, name: str) -> str | None:
    """The text of a top-level field of an `<xml>` document, None when the
    document or the field is missing or malformed."""
    try:
        document = xmltodict.parse(body)
    except (ExpatError, ValueError, TypeError):
        return None
    root = document.get("xml") if isinstance(document, dict) else None
    value = root.get(name) if isinstance(root, dict) else None
    return value if isinstance(value, str) else None
