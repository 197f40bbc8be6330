from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from media import IceServer, turn_rest_credentials


def test_turn_rest_credentials_known_vector() -> None:
    # Vector computed independently with:
    #   printf 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64
    username, credential = turn_rest_credentials("s3cret", "alice", ttl=3600, now=1_700_000_000)
    assert username == "1700003600:alice"
    assert credential == "YAFdW/YDZewZsR1QSgUk2IrfbRI="


def test_turn_rest_credentials_verify_like_coturn() -> None:
    username, credential = turn_rest_credentials("another-secret", "patient-42", ttl=600, now=1000)
    expiry, user = username.split(":", 1)
    assert (int(expiry), user) == (1600, "patient-42")
    expected = hmac.new(b"another-secret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


@pytest.mark.parametrize(("user", "ttl"), [("a:b", 60), ("alice", 0), ("alice", -5)])
def test_turn_rest_credentials_rejects_bad_input(user: str, ttl: int) -> None:
    with pytest.raises(ValueError):
        turn_rest_credentials("s", user, ttl=ttl, now=0)


def test_ice_server_shapes() -> None:
    server = IceServer(urls=["turn:turn.example.org:3478"], username="u", credential="c")
    assert server.to_browser() == {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}
    assert server.to_aiortc().username == "u"
    assert IceServer(urls=["stun:stun.example.org"]).to_browser() == {"urls": ["stun:stun.example.org"]}
