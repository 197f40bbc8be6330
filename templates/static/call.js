// The call client: one signaling WebSocket (docs/signaling.md) and one RTCPeerConnection to the
// server's media relay with the fixed slot layout of docs/media.md. UI code listens to events;
// nothing here touches the DOM.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
const PING_MS = 15000;

export class CallClient extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} opts.encounterId
   * @param {() => Promise<string>} opts.getToken  a fresh room token (API call or the guest link's token)
   * @param {MediaStream|null} opts.localStream     microphone (+ camera) to publish
   */
  constructor({ encounterId, getToken, localStream }) {
    super();
    this.encounterId = encounterId;
    this.getToken = getToken;
    this.localStream = localStream;
    this.ws = null;
    this.pc = null;
    this.peerId = null;
    this.role = null;
    this.capacity = 4;
    this.kinds = ["audio", "video"];
    this.iceServers = [];
    this.resumeToken = null;
    this.admitted = false;
    this.mode = "video";
    this.peers = new Map();      // peer id -> PeerInfo
    this.midToPeer = new Map();  // receive mid -> peer id
    this.streams = new Map();    // peer id -> MediaStream of their tracks
    this.attempt = 0;
    this.closedByUs = false;
    this.ended = false;
    this.state = "idle";
    this._pingTimer = null;
  }

  emit(type, detail = {}) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  setState(state, detail = {}) {
    this.state = state;
    this.emit("state", { state, ...detail });
  }

  async start() {
    this.closedByUs = false;
    await this._connect();
  }

  async _connect() {
    this.setState(this.attempt ? "reconnecting" : "connecting", { attempt: this.attempt });
    let token;
    try {
      token = await this.getToken();
    } catch (err) {
      // Could not get a new room token (offline?); a resume token alone may still get us back in.
      if (!this.resumeToken) { this._scheduleReconnect(); return; }
      token = "resume-only-" + "x".repeat(8);
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws/signal/${this.encounterId}`);
    this.ws = ws;
    ws.onopen = () => {
      const join = { v: 1, type: "join", room: this.encounterId, token };
      if (this.resumeToken) join.resume_token = this.resumeToken;
      ws.send(JSON.stringify(join));
      clearInterval(this._pingTimer);
      this._pingTimer = setInterval(() => this.send({ type: "ping", ts: Date.now() }), PING_MS);
    };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this._onMessage(msg).catch((err) => this.emit("error", { code: "client", message: String(err) }));
    };
    ws.onclose = (ev) => {
      clearInterval(this._pingTimer);
      if (this.ws !== ws) return;
      if (this.closedByUs || this.ended) return;
      if (ev.code === 1008 && !this.peerId) { this.setState("refused", { reason: ev.reason }); return; }
      this._scheduleReconnect();
    };
  }

  _scheduleReconnect() {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.setState("reconnecting", { attempt: this.attempt, delayMs: delay });
    setTimeout(() => { if (!this.closedByUs && !this.ended) this._connect(); }, delay);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ v: 1, ...msg }));
      return true;
    }
    return false;
  }

  async _onMessage(msg) {
    switch (msg.type) {
      case "joined": {
        const wasReconnect = this.attempt > 0;
        this.attempt = 0;
        this.peerId = msg.peer_id;
        this.role = msg.role;
        this.capacity = msg.capacity;
        this.kinds = msg.kinds;
        this.iceServers = msg.ice_servers;
        this.resumeToken = msg.resume_token;
        for (const p of msg.peers) this.peers.set(p.peer_id, p);
        this.emit("joined", msg);
        this.setState(wasReconnect ? "reconnected" : "joined");
        // A resumed session keeps its media connection unless that connection itself died.
        const healthy = this.pc && !["failed", "closed"].includes(this.pc.connectionState);
        if (!(msg.resumed && healthy)) await this._negotiate(Boolean(this.pc));
        break;
      }
      case "waiting": this.admitted = false; this.emit("waiting", msg); break;
      case "admitted": this.admitted = true; this.emit("admitted", msg); break;
      case "answer":
        if (this.pc) await this.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        this._wireMids();
        break;
      case "peer-joined": {
        this.peers.set(msg.peer.peer_id, msg.peer);
        if (msg.audio_mid) this.midToPeer.set(msg.audio_mid, msg.peer.peer_id);
        if (msg.video_mid) this.midToPeer.set(msg.video_mid, msg.peer.peer_id);
        this._wireMids();
        this.emit("peer", msg);
        break;
      }
      case "peer-left":
        this.peers.delete(msg.peer_id);
        for (const [mid, pid] of this.midToPeer) if (pid === msg.peer_id) this.midToPeer.delete(mid);
        this.streams.delete(msg.peer_id);
        this.emit("peer-left", msg);
        break;
      case "mode":
        this.mode = msg.mode;
        if (msg.peer_id === this.peerId) this._applyMode(msg.mode);
        this.emit("mode", msg);
        break;
      case "reconnect":
        this.resumeToken = msg.resume_token;
        this.setState("media-restart");
        setTimeout(() => this._negotiate(true), msg.retry_after_ms || 0);
        break;
      case "error":
        if (msg.code === "visit_ended") { this.ended = true; this.setState("ended"); }
        else if (msg.fatal) { this.closedByUs = true; this.setState("refused", { reason: msg.code, message: msg.message }); }
        this.emit("error", msg);
        break;
      default:
        this.emit(msg.type, msg);
    }
  }

  /** Build a (new) RTCPeerConnection with the fixed layout and send a complete offer. */
  async _negotiate(restart) {
    const old = this.pc;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    if (old) { try { old.close(); } catch { /* already closed */ } }
    this.midToPeer.clear();
    const audio = this.localStream?.getAudioTracks()[0];
    const video = this.localStream?.getVideoTracks()[0];
    const streams = this.localStream ? [this.localStream] : [];
    pc.addTransceiver(audio || "audio", { direction: audio ? "sendrecv" : "recvonly", streams });
    pc.addTransceiver(video || "video", { direction: video ? "sendrecv" : "recvonly", streams });
    for (let i = 0; i < this.capacity - 2; i++) {
      pc.addTransceiver("audio", { direction: "recvonly" });
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    pc.addEventListener("track", () => this._wireMids());
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      this.emit("media-state", { state: pc.connectionState });
      if (pc.connectionState === "failed" && this.ws?.readyState === WebSocket.OPEN) this._negotiate(true);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    if (this.pc !== pc) return;
    if (this.mode !== "video") this._applyMode(this.mode);
    this.send({ type: "offer", sdp: pc.localDescription.sdp, ice_restart: Boolean(restart) });
  }

  /** Attach each receive transceiver's tracks to the stream of the participant it carries. */
  _wireMids() {
    if (!this.pc) return;
    const touched = new Set();
    for (const t of this.pc.getTransceivers()) {
      const pid = t.mid != null ? this.midToPeer.get(t.mid) : undefined;
      if (!pid || !t.receiver.track) continue;
      let stream = this.streams.get(pid);
      if (!stream) { stream = new MediaStream(); this.streams.set(pid, stream); }
      const track = t.receiver.track;
      for (const old of stream.getTracks()) {
        if (old.kind === track.kind && old !== track) stream.removeTrack(old);
      }
      if (!stream.getTracks().includes(track)) { stream.addTrack(track); touched.add(pid); }
    }
    for (const pid of touched) this.emit("stream", { peerId: pid, stream: this.streams.get(pid) });
  }

  _applyMode(mode) {
    // The relay already stopped forwarding; stopping the upstream too saves the patient's bandwidth.
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === "video" || s === this._videoSender);
    const cam = this.localStream?.getVideoTracks()[0];
    if (!this.pc) return;
    const videoTx = this.pc.getTransceivers()[1];
    if (!videoTx) return;
    this._videoSender = videoTx.sender;
    if (mode === "video" && cam) videoTx.sender.replaceTrack(cam);
    else videoTx.sender.replaceTrack(null);
    const mic = this.localStream?.getAudioTracks()[0];
    const audioTx = this.pc.getTransceivers()[0];
    if (audioTx && mic) audioTx.sender.replaceTrack(mode === "chat" ? null : mic);
    void sender;
  }

  /** Replace the published video (camera switch or screen share) without renegotiating. */
  async replaceVideo(track) {
    const tx = this.pc?.getTransceivers()[1];
    if (tx) await tx.sender.replaceTrack(track);
  }

  setMicEnabled(on) { for (const t of this.localStream?.getAudioTracks() || []) t.enabled = on; }
  setCameraEnabled(on) { for (const t of this.localStream?.getVideoTracks() || []) t.enabled = on; }

  chat(text) { return this.send({ type: "chat", text, client_id: "c" + Math.random().toString(36).slice(2, 12) }); }
  admit(peerId) { return this.send({ type: "admit", peer_id: peerId }); }
  requestMode(mode) { return this.send({ type: "mode", mode }); }
  consent(on) { return this.send({ type: "record-consent", consent: on }); }
  screenshare(on) { return this.send({ type: "screenshare", active: on }); }
  announcePhoto(id) { return this.send({ type: "photo", photo_id: id }); }

  leave() {
    this.closedByUs = true;
    this.send({ type: "leave" });
    clearInterval(this._pingTimer);
    try { this.ws?.close(1000); } catch { /* gone */ }
    try { this.pc?.close(); } catch { /* gone */ }
    this.setState("left");
  }

  /** Inbound quality from getStats(): packet loss, jitter and RTT, summarised as good/fair/poor. */
  async quality() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    let lost = 0, received = 0, jitter = 0, rtt = null, framesDecoded = 0;
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        jitter = Math.max(jitter, s.jitter || 0);
        if (s.kind === "video") framesDecoded += s.framesDecoded || 0;
      } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) {
        rtt = s.currentRoundTripTime;
      }
    });
    const prev = this._lastQ || { lost: 0, received: 0 };
    this._lastQ = { lost, received };
    const dLost = lost - prev.lost, dRecv = received - prev.received;
    const loss = dRecv + dLost > 0 ? dLost / (dRecv + dLost) : 0;
    let level = "good";
    if (dRecv === 0) level = "unknown";
    else if (loss > 0.08 || (rtt != null && rtt > 0.6) || jitter > 0.1) level = "poor";
    else if (loss > 0.02 || (rtt != null && rtt > 0.3) || jitter > 0.05) level = "fair";
    return { level, loss, rtt, jitter, framesDecoded };
  }
}

export function waitForGathering(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}
