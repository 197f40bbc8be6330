"""How a client's offer maps onto publish lines and receive slots.

Clients offer a fixed layout so that nobody has to renegotiate when another
participant joins: the first audio and first video m-line the client *sends*
on carry its own microphone and camera; every m-line it *receives* on is a
receive slot, taken in order and paired by position (the i-th receiving audio
line and the i-th receiving video line form slot i). A plain sendrecv
audio+video client therefore already works for a 1:1 consult, and adding
``capacity - 2`` recvonly audio/video pairs covers a full room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc import sdp

from .errors import BadSdp

MEDIA_KINDS = frozenset({"audio", "video"})
_SENDS = frozenset({"sendrecv", "sendonly"})
_RECEIVES = frozenset({"sendrecv", "recvonly"})
MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA_SECTIONS = 32


@dataclass
class OfferLayout:
    publish: dict[str, str] = field(default_factory=dict)  # kind -> mid
    receive: dict[str, list[str]] = field(default_factory=lambda: {"audio": [], "video": []})

    @property
    def slot_count(self) -> int:
        return max(len(self.receive["audio"]), len(self.receive["video"]))

    def slot_mid(self, kind: str, index: int) -> str | None:
        mids = self.receive[kind]
        return mids[index] if index < len(mids) else None

    def answer_direction(self, mid: str, kind: str, allowed: frozenset[str]) -> str:
        """Our preferred direction for one m-line; aiortc ANDs it with the offer."""
        if kind not in allowed:
            return "inactive"
        publishes = self.publish.get(kind) == mid
        receives = mid in self.receive[kind]
        if publishes and receives:
            return "sendrecv"
        if publishes:
            return "recvonly"
        if receives:
            return "sendonly"
        return "inactive"


def parse_offer(text: str) -> tuple[sdp.SessionDescription, OfferLayout]:
    if not isinstance(text, str) or not text.strip():
        raise BadSdp("empty offer")
    if len(text.encode()) > MAX_SDP_BYTES:
        raise BadSdp("offer too large")
    if not text.lstrip().startswith("v=0"):
        raise BadSdp("offer does not start with v=0")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises whatever the bad line provokes
        raise BadSdp(f"unparseable offer: {exc}") from exc

    if not description.media:
        raise BadSdp("offer has no media sections")
    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise BadSdp("offer has too many media sections")

    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    mids = [str(m.rtp.muxId) for m in description.media]
    if bundle is None or sorted(str(item) for item in bundle.items) != sorted(mids):
        # The relay serves everything over one transport (max-bundle).
        raise BadSdp("all media sections must be in one BUNDLE group")

    layout = OfferLayout()
    seen_mids: set[str] = set()
    for media in description.media:
        if media.kind not in MEDIA_KINDS:
            # Data channels are not relayed; chat goes over signaling.
            raise BadSdp(f"unsupported media kind {media.kind!r}")
        mid = media.rtp.muxId
        if not mid or mid in seen_mids:
            raise BadSdp("every media section needs a unique a=mid")
        seen_mids.add(mid)
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise BadSdp("missing ICE credentials")
        if not media.dtls or not media.dtls.fingerprints:
            raise BadSdp("missing DTLS fingerprint")
        if not media.rtcp_mux:
            raise BadSdp("rtcp-mux is required")
        direction = media.direction
        if direction not in sdp.DIRECTIONS:
            # Browsers always state a direction; aiortc cannot answer without one.
            raise BadSdp(f"missing or bad direction {direction!r}")
        if direction in _SENDS and media.kind not in layout.publish:
            layout.publish[media.kind] = mid
        if direction in _RECEIVES:
            layout.receive[media.kind].append(mid)
    return description, layout

