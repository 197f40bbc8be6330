"""ICE server description and TURN REST API credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

from aiortc import RTCIceServer


@dataclass(frozen=True)
class IceServer:
    urls: list[str] = field(default_factory=list)
    username: str | None = None
    credential: str | None = None

    def to_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=list(self.urls), username=self.username, credential=self.credential)

    def to_browser(self) -> dict[str, object]:
        """The shape RTCPeerConnection's ``iceServers`` option expects."""
        server: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            server["username"] = self.username
        if self.credential is not None:
            server["credential"] = self.credential
        return server


def turn_rest_credentials(secret: str, user: str, ttl: int, now: int) -> tuple[str, str]:
    """Ephemeral TURN credentials for coturn's ``use-auth-secret`` mode.

    coturn recomputes the HMAC from the shared secret and rejects the username
    once its leading expiry timestamp has passed, so nothing has to be stored.
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if ":" in user:
        # coturn splits on the first colon; a colon in the user part would make
        # the expiry ambiguous for other TURN REST implementations.
        raise ValueError("user must not contain ':'")
    username = f"{now + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")
