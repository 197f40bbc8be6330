from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from signaling import protocol as p

TOKEN = "tok_" + "a" * 28
SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"

VALID_CLIENT: dict[str, dict[str, Any]] = {
    "join": {"room": "room-1", "token": TOKEN, "display_name": "Dr. Who", "resume_token": TOKEN},
    "offer": {"sdp": SDP, "ice_restart": True},
    "ice": {"candidate": "candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host", "sdp_mid": "0"},
    "admit": {"peer_id": "patient_1"},
    "mode": {"mode": "audio", "peer_id": "patient_1"},
    "chat": {"text": "Hello doctor", "client_id": "c1"},
    "photo": {"photo_id": "ph_123"},
    "screenshare": {"active": True},
    "record-consent": {"consent": False},
    "leave": {},
    "ping": {"ts": 1_700_000_000_000},
}


def raw(type_: str, **fields: Any) -> str:
    return json.dumps({"v": 1, "type": type_, **fields})


@pytest.mark.parametrize("type_", sorted(VALID_CLIENT))
def test_every_client_type_parses(type_: str) -> None:
    message = p.parse_client_message(raw(type_, **VALID_CLIENT[type_]))
    assert message.type == type_
    assert message.v == 1


def test_every_client_type_has_an_example() -> None:
    assert set(VALID_CLIENT) == p.CLIENT_TYPES


def test_bytes_input_and_defaults() -> None:
    message = p.parse_client_message(raw("offer", sdp=SDP).encode())
    assert isinstance(message, p.Offer) and message.ice_restart is False
    end = p.parse_client_message(raw("ice", candidate=None))
    assert isinstance(end, p.Ice) and end.candidate is None


def test_chat_text_is_trimmed() -> None:
    message = p.parse_client_message(raw("chat", text="  hi  "))
    assert isinstance(message, p.ChatSend) and message.text == "hi"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"chat"', "bad_message"),
        (json.dumps({"type": "chat", "text": "x"}), "bad_version"),
        (json.dumps({"v": 2, "type": "chat", "text": "x"}), "bad_version"),
        (json.dumps({"v": "1", "type": "chat", "text": "x"}), "bad_version"),
        (json.dumps({"v": True, "type": "chat", "text": "x"}), "bad_version"),
        (json.dumps({"v": 1, "text": "x"}), "unknown_type"),
        (raw("teleport"), "unknown_type"),
        (raw("joined", peer_id="x"), "unknown_type"),  # server-only type
        (raw("chat", text="x", html="<b>"), "unknown_field"),
        (raw("leave", reason="bye"), "unknown_field"),
        (raw("chat"), "missing_field"),
        (raw("join", room="r"), "missing_field"),
        (raw("chat", text=""), "invalid_value"),
        (raw("chat", text="   "), "invalid_value"),
        (raw("chat", text="x" * (p.MAX_CHAT_CHARS + 1)), "invalid_value"),
        (raw("chat", text=5), "invalid_value"),
        (raw("join", room="../etc", token=TOKEN), "invalid_value"),
        (raw("join", room="r", token="short"), "invalid_value"),
        (raw("offer", sdp="hello there"), "invalid_value"),
        (raw("offer", sdp=SDP, ice_restart="yes"), "invalid_value"),
        (raw("ice", candidate="<script>"), "invalid_value"),
        (raw("ice", candidate=None, sdp_mline_index=-1), "invalid_value"),
        (raw("admit", peer_id=""), "invalid_value"),
        (raw("mode", mode="hologram"), "invalid_value"),
        (raw("screenshare", active=1), "invalid_value"),
        (raw("record-consent", consent="true"), "invalid_value"),
        (raw("ping", ts=-1), "invalid_value"),
        (raw("photo", photo_id="a b"), "invalid_value"),
    ],
)
def test_bad_frames_are_refused(frame: str | bytes, code: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_client_message(frame)
    assert info.value.code == code
    assert info.value.message


def test_oversized_frames_are_refused_before_decoding() -> None:
    frame = raw("chat", text="x" * 100, pad="y" * (64 * 1024))
    with pytest.raises(p.ProtocolError) as info:
        p.parse_client_message(frame)
    assert info.value.code == "too_large"
    with pytest.raises(p.ProtocolError):
        p.parse_client_message(raw("chat", text="hello"), max_bytes=10)


PEER = p.PeerInfo(peer_id="doc", role="clinician", display_name="Dr")
VALID_SERVER: list[p.BaseModel] = [
    p.Joined(
        peer_id="pat",
        room="room-1",
        role="patient",
        resume_token=TOKEN,
        capacity=4,
        kinds=["audio", "video"],
        ice_servers=[p.IceServerInfo(urls=["turn:turn.example.org"], username="1:u", credential="c")],
        peers=[PEER],
    ),
    p.Answer(sdp=SDP),
    p.Waiting(position=2, estimated_wait_seconds=120),
    p.Admitted(),
    p.ModeChanged(peer_id="pat", mode="audio", by="doc"),
    p.ChatMessage(id="m1", sender="doc", text="Hi", ts=1, client_id="c1"),
    p.PhotoShared(photo_id="ph", sender="pat", url="https://example.org/p/ph", ts=2),
    p.ScreenShareChanged(peer_id="doc", active=True),
    p.RecordConsentChanged(peer_id="pat", consent=True, recording=False),
    p.Pong(ts=5, server_ts=6),
    p.PeerJoined(peer=PEER, slot=0, audio_mid="0", video_mid="1"),
    p.PeerLeft(peer_id="doc", reason="disconnected"),
    p.Reconnect(reason="ice-failed", resume_token=TOKEN, retry_after_ms=500),
    p.Error(code="room_full", message="The room is full", fatal=True),
]


@pytest.mark.parametrize("message", VALID_SERVER, ids=lambda m: m.type)  # type: ignore[attr-defined]
def test_server_messages_round_trip(message: p.BaseModel) -> None:
    text = p.serialize_server_message(message)
    data = json.loads(text)
    assert data["v"] == 1
    assert p.SERVER_ADAPTER.validate_json(text) == message


def test_every_server_type_has_an_example() -> None:
    schema = p.server_schema()
    assert {m.type for m in VALID_SERVER} == set(schema["discriminator"]["mapping"])  # type: ignore[attr-defined]


def test_server_models_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        p.Error(code="Not A Code!", message="x")
    with pytest.raises(ValidationError):
        p.Waiting(position=0)
    with pytest.raises(ValidationError):
        p.ChatMessage(id="m", sender="s", text="x", ts=1, extra=1)  # type: ignore[call-arg]
    assert json.loads(p.error_message("bad_json", "x" * 900))["message"] == "x" * 500


ROOT = Path(__file__).resolve().parents[2]


def test_signaling_doc_embeds_current_schemas() -> None:
    doc = (ROOT / "docs" / "signaling.md").read_text()
    assert p.render_schema_docs(doc) == doc, "run: python -m signaling.protocol docs/signaling.md"
    for name in ("client", "server"):
        assert f"<!-- BEGIN GENERATED SCHEMA: {name} -->" in doc
        assert (p.SCHEMA_DIR / f"{name}.json").read_text() == p.schema_json(name)


def test_doc_mentions_every_message_type() -> None:
    doc = (ROOT / "docs" / "signaling.md").read_text()
    for type_ in p.CLIENT_TYPES | set(p.server_schema()["discriminator"]["mapping"]):
        assert f"`{type_}`" in doc


def test_render_schema_docs_replaces_stale_blocks() -> None:
    stale = "<!-- BEGIN GENERATED SCHEMA: client -->\n```json\n{}\n```\n<!-- END GENERATED SCHEMA -->\n"
    rendered = p.render_schema_docs("intro\n" + stale)
    assert rendered.startswith("intro\n")
    assert json.loads(rendered.split("```json\n")[1].split("```")[0]) == p.client_schema()
