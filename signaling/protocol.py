"""Signaling message protocol, version 1.

Every WebSocket frame is one JSON object carrying ``"v": 1`` and a ``type``.
Client frames are parsed with :func:`parse_client_message`, which turns every
kind of bad input into a :class:`ProtocolError` with a stable ``code``; server
frames are built from the models below and written with
:func:`serialize_server_message`. ``docs/signaling.md`` embeds the JSON
Schemas generated from these models (see :func:`render_schema_docs`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

PROTOCOL_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024

# WebSocket close code for repeated abuse (RFC 6455 "policy violation").
CLOSE_POLICY_VIOLATION: Final = 1008
# Protocol errors tolerated per connection within ERROR_WINDOW_SECONDS before closing with 1008.
MAX_ERRORS_PER_WINDOW: Final = 5
ERROR_WINDOW_SECONDS: Final = 60
# Heartbeat: clients ping every PING_INTERVAL_SECONDS; a connection silent for
# IDLE_TIMEOUT_SECONDS is closed (and may resume with its token).
PING_INTERVAL_SECONDS: Final = 15
IDLE_TIMEOUT_SECONDS: Final = 45
# Sustained messages per second and burst per connection, by message type.
RATE_LIMITS: Final[dict[str, tuple[float, int]]] = {
    "chat": (1.0, 5),
    "photo": (0.2, 3),
    "offer": (0.2, 3),
    "ice": (20.0, 100),
    "ping": (1.0, 3),
    "*": (5.0, 20),
}

MAX_CHAT_CHARS: Final = 2000
MAX_SDP_CHARS: Final = 60000

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Token = Annotated[str, StringConstraints(min_length=16, max_length=512, pattern=r"^[A-Za-z0-9_.~+/=-]+$")]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
ChatText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHAT_CHARS)]
Sdp = Annotated[str, StringConstraints(min_length=10, max_length=MAX_SDP_CHARS, pattern=r"^v=0")]
Timestamp = Annotated[int, Field(ge=0, le=2**53)]
# "chat" means no media at all (the visit continues over chat only).
Mode = Literal["video", "audio", "chat"]
Role = Literal["clinician", "patient", "caregiver", "interpreter", "observer"]
MediaKind = Literal["audio", "video"]


class ProtocolError(Exception):
    """A client frame that must be refused; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1


# --- client to server -------------------------------------------------------


class Join(_Message):
    """First frame on a connection. ``resume_token`` resumes an earlier session."""

    type: Literal["join"] = "join"
    room: Id
    token: Token
    display_name: DisplayName | None = None
    resume_token: Token | None = None


class Offer(_Message):
    """Complete (non-trickle) SDP offer; ``ice_restart`` marks a reconnect."""

    type: Literal["offer"] = "offer"
    sdp: Sdp
    ice_restart: bool = False


class Ice(_Message):
    """A trickled ICE candidate; ``candidate: null`` means end-of-candidates."""

    type: Literal["ice"] = "ice"
    candidate: Annotated[str, StringConstraints(max_length=1024, pattern=r"^(candidate:.*)?$")] | None
    sdp_mid: Annotated[str, StringConstraints(max_length=32)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=63)] | None = None


class Admit(_Message):
    """A clinician lets a waiting participant in."""

    type: Literal["admit"] = "admit"
    peer_id: Id


class ModeRequest(_Message):
    """Switch video/audio-only; ``peer_id`` targets someone else (clinicians only)."""

    type: Literal["mode"] = "mode"
    mode: Mode
    peer_id: Id | None = None


class ChatSend(_Message):
    type: Literal["chat"] = "chat"
    text: ChatText
    client_id: Id | None = None


class PhotoAnnounce(_Message):
    """Announces a photo already uploaded over HTTPS; the server resolves its URL."""

    type: Literal["photo"] = "photo"
    photo_id: Id


class ScreenShare(_Message):
    type: Literal["screenshare"] = "screenshare"
    active: bool


class RecordConsent(_Message):
    type: Literal["record-consent"] = "record-consent"
    consent: bool


class Leave(_Message):
    type: Literal["leave"] = "leave"


class Ping(_Message):
    type: Literal["ping"] = "ping"
    ts: Timestamp | None = None


ClientMessage = Annotated[
    Join
    | Offer
    | Ice
    | Admit
    | ModeRequest
    | ChatSend
    | PhotoAnnounce
    | ScreenShare
    | RecordConsent
    | Leave
    | Ping,
    Field(discriminator="type"),
]

# --- server to client -------------------------------------------------------


class IceServerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class PeerInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    peer_id: Id
    role: Role
    display_name: str | None = None
    mode: Mode = "video"
    screensharing: bool = False
    #: False while the participant is held in the waiting room (only clinicians are told about them).
    admitted: bool = True


class Joined(_Message):
    """Reply to ``join``. Clients offer ``capacity - 1`` receive slots."""

    type: Literal["joined"] = "joined"
    peer_id: Id
    room: Id
    role: Role
    resume_token: Token
    capacity: Annotated[int, Field(ge=2, le=8)]
    kinds: list[MediaKind]
    ice_servers: list[IceServerInfo]
    peers: list[PeerInfo]
    resumed: bool = False


class Answer(_Message):
    type: Literal["answer"] = "answer"
    sdp: Sdp


class Waiting(_Message):
    type: Literal["waiting"] = "waiting"
    position: Annotated[int, Field(ge=1)]
    estimated_wait_seconds: Annotated[int, Field(ge=0)] | None = None
    message: str | None = None
    provider_name: str | None = None
    provider_status: Literal["online", "in_call", "away"] | None = None


class Admitted(_Message):
    type: Literal["admitted"] = "admitted"


class ModeChanged(_Message):
    type: Literal["mode"] = "mode"
    peer_id: Id
    mode: Mode
    by: Id


class ChatMessage(_Message):
    type: Literal["chat"] = "chat"
    id: Id
    sender: Id
    text: ChatText
    ts: Timestamp
    client_id: Id | None = None
    sender_name: Annotated[str, StringConstraints(max_length=200)] | None = None
    sender_role: Annotated[str, StringConstraints(max_length=16)] | None = None


class PhotoShared(_Message):
    type: Literal["photo"] = "photo"
    photo_id: Id
    sender: Id
    url: Annotated[str, StringConstraints(max_length=2048)]
    ts: Timestamp


class ScreenShareChanged(_Message):
    type: Literal["screenshare"] = "screenshare"
    peer_id: Id
    active: bool


class RecordConsentChanged(_Message):
    type: Literal["record-consent"] = "record-consent"
    peer_id: Id
    consent: bool
    recording: bool


class Pong(_Message):
    type: Literal["pong"] = "pong"
    ts: Timestamp | None = None
    server_ts: Timestamp


class PeerJoined(_Message):
    """A participant is now visible; ``audio_mid``/``video_mid`` carry their media."""

    type: Literal["peer-joined"] = "peer-joined"
    peer: PeerInfo
    slot: Annotated[int, Field(ge=0)] | None = None
    audio_mid: str | None = None
    video_mid: str | None = None


class PeerLeft(_Message):
    type: Literal["peer-left"] = "peer-left"
    peer_id: Id
    reason: Literal["left", "disconnected", "removed", "held"] = "left"


class Reconnect(_Message):
    """Media transport failed or the server is moving the session: re-offer."""

    type: Literal["reconnect"] = "reconnect"
    reason: Literal["ice-failed", "server-restart", "relay-moved", "renegotiate"]
    resume_token: Token
    retry_after_ms: Annotated[int, Field(ge=0, le=60000)] = 0
    ice_restart: bool = True


class Error(_Message):
    type: Literal["error"] = "error"
    code: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
    message: Annotated[str, StringConstraints(max_length=500)]
    fatal: bool = False


ServerMessage = Annotated[
    Joined
    | Answer
    | Waiting
    | Admitted
    | ModeChanged
    | ChatMessage
    | PhotoShared
    | ScreenShareChanged
    | RecordConsentChanged
    | Pong
    | PeerJoined
    | PeerLeft
    | Reconnect
    | Error,
    Field(discriminator="type"),
]

CLIENT_ADAPTER: Final[TypeAdapter[ClientMessage]] = TypeAdapter(ClientMessage)
SERVER_ADAPTER: Final[TypeAdapter[ServerMessage]] = TypeAdapter(ServerMessage)
CLIENT_TYPES: Final = frozenset(
    m.model_fields["type"].default
    for m in (Join, Offer, Ice, Admit, ModeRequest, ChatSend, PhotoAnnounce, ScreenShare, RecordConsent, Leave, Ping)
)


def parse_client_message(raw: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError("too_large", f"message exceeds {max_bytes} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", "message is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "message must be a JSON object")
    # Version first, so a client from the future gets told so rather than
    # hearing about whichever field changed.
    version = data.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError("bad_version", f"unsupported protocol version; expected v={PROTOCOL_VERSION}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", "unknown message type")
    try:
        return CLIENT_ADAPTER.validate_python(data, strict=True)
    except ValidationError as exc:
        raise _as_protocol_error(exc) from exc


def _as_protocol_error(exc: ValidationError) -> ProtocolError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid"}
    # loc starts with the union tag; drop it so the field name is what shows.
    location = ".".join(str(part) for part in first["loc"][1:]) or "message"
    if first["type"] == "extra_forbidden":
        return ProtocolError("unknown_field", f"unknown field {location!r}")
    if first["type"] == "missing":
        return ProtocolError("missing_field", f"missing field {location!r}")
    return ProtocolError("invalid_value", f"invalid value for {location!r}: {first['msg']}")


def serialize_server_message(message: BaseModel) -> str:
    # Re-validated so a handler bug cannot put an off-schema frame on the wire.
    validated = SERVER_ADAPTER.validate_python(message.model_dump())
    return SERVER_ADAPTER.dump_json(validated).decode()


def error_message(code: str, message: str, *, fatal: bool = False) -> str:
    return serialize_server_message(Error(code=code, message=message[:500], fatal=fatal))


def client_schema() -> dict[str, Any]:
    return CLIENT_ADAPTER.json_schema(mode="validation")


def server_schema() -> dict[str, Any]:
    return SERVER_ADAPTER.json_schema(mode="serialization")


SCHEMA_DIR: Final = Path(__file__).parent / "schemas"
_BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED SCHEMA: (?P<name>client|server) -->\n)```json\n.*?```\n(<!-- END GENERATED SCHEMA -->)",
    re.DOTALL,
)


def schema_json(name: str) -> str:
    schema = client_schema() if name == "client" else server_schema()
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_schema_docs(text: str) -> str:
    """Replace the generated schema blocks in ``docs/signaling.md``."""
    return _BLOCK.sub(lambda m: f"{m.group(1)}```json\n{schema_json(m.group('name'))}```\n{m.group(3)}", text)


def main(argv: list[str]) -> int:
    """``python -m signaling.protocol [docs/signaling.md]`` regenerates schemas and doc."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in ("client", "server"):
        (SCHEMA_DIR / f"{name}.json").write_text(schema_json(name))
    for doc in argv:
        path = Path(doc)
        path.write_text(render_schema_docs(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
