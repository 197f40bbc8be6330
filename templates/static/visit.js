// Page controller for the visit pages (patient, doctor, guest): device check → check-in → waiting room
// → call. Every state is shown as text in #visit-status (role=status), not only as colour or video.

import { api, ApiError } from "/static/api.js";
import { CallClient } from "/static/call.js";
import { connectivity, micMeter, openDevices, playTone } from "/static/device-check.js";
// The note panel starts itself on the doctor's page, without waiting for the camera.
import "/static/notes.js";

const cfg = JSON.parse(document.getElementById("visit-config").textContent);
const S = cfg.strings;
const $ = (id) => document.getElementById(id);
const show = (id, on = true) => { const el = $(id); if (el) el.hidden = !on; };
const status = (text) => { $("visit-status").textContent = text; };
const eid = cfg.encounter_id;
let client = null;
let local = null;
let cameraOn = true;
let micOn = true;

// --- room tokens ----------------------------------------------------------------------------------------------

function guestToken() {
  const m = location.hash.match(/token=([A-Za-z0-9_.~+\/=-]+)/);
  return m ? m[1] : "";
}

async function roomToken() {
  if (cfg.role === "guest") return guestToken();
  const r = await api("POST", `/api/v1/encounters/${eid}/room-token`);
  return r.token;
}

// --- chat -----------------------------------------------------------------------------------------------------

function addChat(who, text, { img } = {}) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who + ":";
  li.append(name);
  if (img) {
    const a = document.createElement("a");
    a.href = img;
    a.target = "_blank";
    const image = document.createElement("img");
    image.src = img;
    image.alt = text;
    a.append(image);
    li.append(a);
  } else {
    li.append(document.createTextNode(text));
  }
  $("chat-log").append(li);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
}

function senderName(msg) {
  if (client && msg.sender === client.peerId) return S.you;
  return msg.sender_name || client?.peers.get(msg.sender)?.display_name || msg.sender;
}

async function loadChatHistory() {
  if (cfg.role === "guest") return;
  try {
    const r = await api("GET", `/api/v1/encounters/${eid}/chat`);
    $("chat-log").replaceChildren();
    for (const m of r.items) {
      if (m.photo_id) addChat(m.sender_name || m.sender_role, "photo", { img: `/api/v1/photos/${m.photo_id}` });
      else addChat(m.sender_name || m.sender_role, m.text);
    }
  } catch { /* the live messages still arrive */ }
}

function wireChat() {
  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || !client) return;
    if (client.chat(text)) $("chat-input").value = "";
  });
  $("photo-input").addEventListener("change", async () => {
    const file = $("photo-input").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("purpose", "chat");
    form.append("photo", file);
    try {
      const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
      const resp = await fetch(`/api/v1/encounters/${eid}/photos`, { method: "POST", body: form,
        headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
      if (!resp.ok) throw new Error(String(resp.status));
      const photo = await resp.json();
      client?.announcePhoto(photo.id);
      status(S.photo_sent);
    } catch {
      status(S.photo_failed);
    }
    $("photo-input").value = "";
  });
}

// --- the call -----------------------------------------------------------------------------------------------

function setQuality(level) {
  const el = $("quality");
  el.dataset.level = level;
  el.textContent = S[`quality_${level}`] || S.quality_unknown;
}

function modeText(mode) { return S[`mode_${mode}`] || ""; }

function attachStream(peerId, stream) {
  const info = client.peers.get(peerId);
  const main = $("remote-video");
  // The main tile shows the other party: the clinician for patients and guests, the patient for clinicians.
  const wantMain = cfg.role === "clinician" ? peerId === "patient" : peerId === "clinician";
  let video = main;
  if (!wantMain && main.dataset.peer && main.dataset.peer !== peerId) {
    video = document.querySelector(`video[data-peer="${peerId}"]`);
    if (!video) {
      video = document.createElement("video");
      video.autoplay = true; video.playsInline = true; video.muted = true;
      video.dataset.testid = "remote-tile";
      video.setAttribute("data-testid", "remote-tile");
      video.setAttribute("aria-label", info?.display_name || peerId);
      $("tiles").append(video);
    }
  }
  video.dataset.peer = peerId;
  const videoOnly = new MediaStream(stream.getVideoTracks());
  video.srcObject = videoOnly;
  video.play().catch(() => {});
  if (video === main) $("remote-label").textContent = info?.display_name || "";
  // Audio plays through one element per participant; video elements stay muted so autoplay is allowed.
  let audio = document.querySelector(`audio[data-peer="${peerId}"]`);
  if (!audio) {
    audio = document.createElement("audio");
    audio.autoplay = true;
    audio.dataset.peer = peerId;
    document.body.append(audio);
  }
  audio.srcObject = new MediaStream(stream.getAudioTracks());
  audio.play().catch(() => {
    const b = $("unmute-remote");
    b.textContent = S.unmute_remote;
    b.hidden = false;
  });
  // Tracks can be added to the stream later (video after audio); refresh when they are.
  stream.onaddtrack = () => attachStream(peerId, stream);
}

function startCall(onAdmitted) {
  client = new CallClient({ encounterId: eid, getToken: roomToken, localStream: local });
  window.telemedCall = client; // for diagnostics and the end-to-end tests
  show("chat-section");
  client.addEventListener("state", (ev) => {
    const { state, attempt, delayMs } = ev.detail;
    const banner = $("reconnect-banner");
    if (state === "reconnecting") {
      banner.hidden = false;
      banner.dataset.state = "reconnecting";
      banner.textContent = `${S.reconnecting} ${delayMs ? S.reconnect_in.replace("{s}", Math.ceil(delayMs / 1000)).replace("{n}", attempt) : ""}`;
    } else if (state === "media-restart") {
      banner.hidden = false;
      banner.dataset.state = "media-restart";
      banner.textContent = S.media_restart;
    } else if (state === "reconnected") {
      banner.dataset.state = "connected";
      banner.textContent = S.reconnected;
      setTimeout(() => { if (banner.dataset.state === "connected") banner.hidden = true; }, 3000);
    } else if (state === "ended") {
      status(S.ended);
      banner.hidden = true;
      finish();
    } else if (state === "refused") {
      status(`${S.refused} ${ev.detail.message || ev.detail.reason || ""}`);
    } else if (state === "left") {
      status(S.left);
    } else if (state === "connecting") {
      status(S.connecting);
    }
    document.body.dataset.callState = state;
  });
  client.addEventListener("media-state", (ev) => {
    document.body.dataset.mediaState = ev.detail.state;
    if (ev.detail.state === "connected" && $("reconnect-banner").dataset.state === "media-restart") {
      $("reconnect-banner").hidden = true;
    }
  });
  client.addEventListener("joined", (ev) => {
    if (cfg.role === "clinician") status(S.in_call);
    $("mode-status").textContent = modeText(client.mode);
    for (const p of ev.detail.peers) onPeer(p);
  });
  client.addEventListener("waiting", (ev) => {
    const w = ev.detail;
    status(S.waiting);
    show("waiting-section");
    if ($("wait-position")) {
      $("wait-position").textContent = w.position ?? "–";
      $("wait-eta").textContent = w.estimated_wait_seconds != null ? Math.round(w.estimated_wait_seconds / 60) : "–";
      const ps = w.provider_status ? S[`provider_${w.provider_status}`] : "";
      $("wait-provider").textContent = [w.provider_name, ps].filter(Boolean).join(" — ") || "–";
    }
  });
  client.addEventListener("admitted", () => {
    status(S.admitted);
    show("waiting-section", false);
    show("call-section");
    onAdmitted?.();
  });
  client.addEventListener("peer", (ev) => onPeer(ev.detail.peer));
  client.addEventListener("stream", (ev) => attachStream(ev.detail.peerId, ev.detail.stream));
  client.addEventListener("peer-left", (ev) => {
    const v = document.querySelector(`video[data-peer="${ev.detail.peer_id}"]`);
    if (v && v.id !== "remote-video") v.remove();
    if (cfg.role === "clinician" && ev.detail.peer_id === "patient") {
      $("patient-presence").textContent = S.patient_not_here;
    }
  });
  client.addEventListener("mode", (ev) => {
    $("mode-status").textContent = modeText(ev.detail.mode);
    const audioOnly = ev.detail.mode !== "video";
    $("toggle-audio-only").setAttribute("aria-pressed", String(audioOnly));
    $("toggle-audio-only").textContent = audioOnly ? S.video_on : S.audio_only;
  });
  client.addEventListener("chat", (ev) => addChat(senderName(ev.detail), ev.detail.text));
  client.addEventListener("photo", (ev) => addChat(senderName(ev.detail), "photo", { img: ev.detail.url }));
  client.addEventListener("record-consent", (ev) => {
    const d = ev.detail;
    $("record-status").textContent = d.recording ? S.recording_on : S.recording_off;
    if (d.peer_id !== client.peerId && d.consent && !d.recording && cfg.role !== "clinician") {
      $("consent-text").textContent = S.consent_asked;
      show("consent-ask");
    }
  });
  client.addEventListener("screenshare", () => {});
  client.addEventListener("error", (ev) => {
    const code = ev.detail.code;
    if (code === "visit_ended") return;
    // The page's own words where it has them; the server's message is for logs.
    if (S[`err_${code}`]) {
      status(S[`err_${code}`]);
      if (code === "consent_required" && $("admit-patient")) $("admit-patient").disabled = false;
      return;
    }
    status(`${S.error} ${ev.detail.message || code}`);
  });
  client.start();
}

function onPeer(peer) {
  if (cfg.role !== "clinician" || peer.peer_id !== "patient") return;
  const waiting = peer.admitted === false;
  $("patient-presence").textContent = waiting ? S.patient_waiting : S.patient_in_call;
  $("admit-patient").disabled = !waiting;
}

function finish() {
  for (const t of local?.getTracks() || []) t.stop();
  show("call-section", false);
  show("waiting-section", false);
}

function wireControls() {
  $("toggle-mute").addEventListener("click", () => {
    micOn = !micOn;
    client?.setMicEnabled(micOn);
    $("toggle-mute").setAttribute("aria-pressed", String(!micOn));
    $("toggle-mute").textContent = micOn ? S.mute : S.unmute;
  });
  $("toggle-camera").addEventListener("click", () => {
    cameraOn = !cameraOn;
    client?.setCameraEnabled(cameraOn);
    $("toggle-camera").setAttribute("aria-pressed", String(!cameraOn));
    $("toggle-camera").textContent = cameraOn ? S.camera_off : S.camera_on;
  });
  $("switch-camera").addEventListener("click", async () => {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    if (devices.length < 2 || !local) return;
    const current = local.getVideoTracks()[0]?.getSettings().deviceId;
    const next = devices[(devices.findIndex((d) => d.deviceId === current) + 1) % devices.length];
    const s = await navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: next.deviceId } } });
    const track = s.getVideoTracks()[0];
    const old = local.getVideoTracks()[0];
    if (old) { local.removeTrack(old); old.stop(); }
    local.addTrack(track);
    $("local-video").srcObject = local;
    await client?.replaceVideo(track);
  });
  $("toggle-audio-only").addEventListener("click", () => {
    client?.requestMode(client.mode === "video" ? "audio" : "video");
  });
  $("unmute-remote").addEventListener("click", () => {
    for (const a of document.querySelectorAll("audio[data-peer]")) a.play().catch(() => {});
    $("unmute-remote").hidden = true;
  });
  $("consent-yes").addEventListener("click", () => { client?.consent(true); show("consent-ask", false); });
  $("consent-no").addEventListener("click", () => { client?.consent(false); show("consent-ask", false); });
  $("hangup").addEventListener("click", async () => {
    if (cfg.role === "clinician") {
      try { await api("POST", `/api/v1/encounters/${eid}/complete`); } catch { /* already finished */ }
    }
    client?.leave();
    finish();
    status(cfg.role === "clinician" ? S.ended : S.left);
  });
  window.setInterval(async () => {
    if (!client) return;
    const q = await client.quality().catch(() => null);
    if (q) setQuality(q.level);
  }, 2000);
}

// --- patient ------------------------------------------------------------------------------------------------

// Check-in refusals, one sentence each in the page's language, chosen by the API error code (never the server's
// English message). consent_required is not shown as an error: the consent step opens instead.
const CHECKIN_ERRORS = {
  identity_mismatch: ["ci_identity", ["ci-family", "ci-given", "ci-birth"]],
  too_early: ["ci_too_early", []],
  illegal_transition: ["ci_closed", []],
  validation_failed: ["ci_missing", []],
  network: ["network_error", []],
};
const CHECKIN_FIELDS = { family_name: "ci-family", given_name: "ci-given", birth_date: "ci-birth",
  chief_complaint: "ci-complaint" };

function errorCode(err) {
  if (err instanceof ApiError) return err.code;
  return err instanceof TypeError ? "network" : ""; // fetch fails with a TypeError when offline
}

function checkinError(text, fieldIds = []) {
  for (const id of Object.values(CHECKIN_FIELDS)) $(id).removeAttribute("aria-invalid");
  $("checkin-error").textContent = text;
  for (const id of fieldIds) $(id).setAttribute("aria-invalid", "true");
  if (fieldIds.length) $(fieldIds[0]).focus();
}

// Telemedicine consent: asked once, before the first check-in (or before joining a visit that is already
// checked in, if it was withdrawn). Declining explains how to reach the clinic instead.
const consent = { needed: Boolean(cfg.consent?.needed), next: null };

function askConsent(next) {
  consent.next = next;
  for (const id of ["checkin-section", "tm-declined-section"]) show(id, false);
  $("tm-consent-error").textContent = "";
  show("tm-consent-section");
  status(S.consent_needed);
  $("tm-consent-h").focus();
}

async function answerConsent(agree) {
  const buttons = [$("tm-consent-agree"), $("tm-consent-decline")];
  for (const b of buttons) b.disabled = true;
  try {
    await api("POST", `/api/v1/patients/${cfg.patient_id}/consents${agree ? "" : "/decline"}`,
      { kind: cfg.consent.kind, version: cfg.consent.version, encounter_id: eid });
  } catch (err) {
    const code = errorCode(err);
    $("tm-consent-error").textContent = code === "consent_version_changed" ? S.consent_changed
      : code === "network" ? S.network_error : S.consent_failed;
    return;
  } finally {
    for (const b of buttons) b.disabled = false;
  }
  show("tm-consent-section", false);
  if (agree) {
    consent.needed = false;
    status(S.consent_given);
    consent.next?.();
  } else {
    show("tm-declined-section");
    status(S.consent_declined);
    $("tm-declined-h").focus();
  }
}

function showCheckin() {
  show("checkin-section");
  $("ci-family").focus();
}

async function patientPage() {
  const checks = { camera: false, mic: false, net: false };
  const set = (id, ok, text) => {
    const el = $(id);
    el.textContent = text;
    el.dataset.ok = String(ok);
  };
  const refresh = () => {
    const ready = checks.mic && checks.net;
    $("join-call").disabled = !ready;
    $("device-summary").textContent = ready ? S.device_ready : S.device_not_ready;
    if (ready) status(S.device_ready);
  };
  $("tm-consent-agree").addEventListener("click", () => answerConsent(true));
  $("tm-consent-decline").addEventListener("click", () => answerConsent(false));
  $("tm-consent-again").addEventListener("click", () => askConsent(consent.next));
  const opened = await openDevices();
  local = opened.stream;
  checks.camera = opened.camera;
  set("check-camera", opened.camera, opened.camera ? S.camera_ok : S.camera_failed);
  if (local) $("preview").srcObject = local;
  checks.mic = Boolean(local?.getAudioTracks().length);
  set("check-mic", checks.mic, checks.mic ? S.mic_ok : S.mic_failed);
  const stopMeter = micMeter(local, $("mic-meter"));
  $("speaker-test").addEventListener("click", async () => {
    await playTone();
    $("check-speaker").textContent = S.speaker_played;
  });
  refresh();
  connectivity(eid, cfg.stun_urls).then((r) => {
    checks.net = r.ok;
    set("check-net", r.ok, r.ok ? `${S.net_ok} (${r.roundTripMs} ms)` : S.net_failed);
    refresh();
  });
  let statusNow = cfg.status;
  $("join-call").addEventListener("click", async () => {
    $("join-call").disabled = true;
    stopMeter();
    show("device-section", false);
    $("local-video").srcObject = local;
    try {
      const enc = await api("GET", `/api/v1/encounters/${eid}`);
      statusNow = enc.status;
    } catch { /* use the page's status */ }
    const next = statusNow === "booked" ? showCheckin : joinNow;
    if (consent.needed && ["booked", "checked_in"].includes(statusNow)) askConsent(next);
    else next();
  });
  // An urgent symptom ticked: say at once whom to call; checking in stays possible (triage puts them first).
  const flags = [...document.querySelectorAll("#checkin-form input[data-red-flag]")];
  const warn = () => show("emergency-warning", flags.some((i) => i.checked));
  for (const box of flags) box.addEventListener("change", warn);
  $("checkin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = {
      family_name: f.family_name.value.trim(), given_name: f.given_name.value.trim(),
      birth_date: f.birth_date.value, chief_complaint: f.chief_complaint.value.trim(),
      symptoms: [...f.querySelectorAll('input[name="symptoms"]:checked')].map((i) => i.value),
    };
    const empty = Object.entries(CHECKIN_FIELDS).filter(([k]) => !body[k]).map(([, id]) => id);
    if (empty.length) {
      checkinError(S.ci_missing, empty);
      return;
    }
    const submit = $("checkin-submit");
    submit.disabled = true;
    try {
      await api("POST", `/api/v1/encounters/${eid}/check-in`, body, { idempotencyKey: crypto.randomUUID() });
      checkinError("");
      show("checkin-section", false);
      joinNow();
    } catch (err) {
      const code = errorCode(err);
      if (code === "consent_required") {
        consent.needed = true;
        askConsent(showCheckin);
        return;
      }
      const [key, ids] = CHECKIN_ERRORS[code] ?? ["ci_other", []];
      const fieldIds = code === "validation_failed"
        ? Object.keys(err.fields ?? {}).map((k) => CHECKIN_FIELDS[k]).filter(Boolean) : ids;
      const phone = key === "ci_other" && cfg.clinic?.phone_display
        ? ` ${S.ci_call.replace("{phone}", cfg.clinic.phone_display)}` : "";
      checkinError(S[key] + phone, fieldIds);
    } finally {
      submit.disabled = false;
    }
  });
}

function joinNow() {
  status(S.connecting);
  loadChatHistory();
  startCall();
}

// --- doctor -------------------------------------------------------------------------------------------------

async function doctorPage() {
  const opened = await openDevices();
  local = opened.stream;
  $("local-video").srcObject = local;
  show("call-section");
  loadChatHistory();
  startCall();
  $("admit-patient").disabled = cfg.status !== "checked_in";
  if (cfg.status === "in_consult") $("patient-presence").textContent = S.patient_in_call;
  $("admit-patient").addEventListener("click", () => {
    client?.admit("patient");
    $("admit-patient").disabled = true;
    for (const a of document.querySelectorAll("audio[data-peer]")) a.play().catch(() => {});
  });
  $("toggle-chat-only").addEventListener("click", () => client?.requestMode(client.mode === "chat" ? "video" : "chat"));
  let sharing = null;
  $("toggle-screenshare").addEventListener("click", async () => {
    if (sharing) {
      for (const t of sharing.getTracks()) t.stop();
      sharing = null;
      await client?.replaceVideo(local?.getVideoTracks()[0] || null);
      client?.screenshare(false);
      $("toggle-screenshare").setAttribute("aria-pressed", "false");
      return;
    }
    try {
      sharing = await navigator.mediaDevices.getDisplayMedia({ video: true });
      await client?.replaceVideo(sharing.getVideoTracks()[0]);
      client?.screenshare(true);
      $("toggle-screenshare").setAttribute("aria-pressed", "true");
      status(S.sharing);
    } catch { sharing = null; }
  });
  let recordWanted = false;
  $("record-toggle").addEventListener("click", () => {
    recordWanted = !recordWanted;
    client?.consent(recordWanted);
    $("record-toggle").setAttribute("aria-pressed", String(recordWanted));
  });
  $("guest-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", `/api/v1/encounters/${eid}/guests`,
        { role: $("guest-role").value, display_name: $("guest-name").value.trim() });
      $("guest-link").textContent = `${S.guest_link} ${location.origin}${r.join_path}`;
    } catch (err) {
      $("guest-link").textContent = `${S.error} ${err.message}`;
    }
  });
}

// --- guest --------------------------------------------------------------------------------------------------

async function guestPage() {
  const opened = await openDevices();
  local = opened.stream;
  $("local-video").srcObject = local;
  show("call-section");
  startCall();
}

wireChat();
wireControls();
if (cfg.role === "patient") patientPage();
else if (cfg.role === "clinician") doctorPage();
else guestPage();
