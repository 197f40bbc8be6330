// Pre-call device check: camera preview, microphone level, a speaker tone and a connectivity test
// (a WebSocket round trip to signaling and ICE gathering), each with visible status text.

import { waitForGathering } from "/static/call.js";

export async function openDevices() {
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: true, video: true }), camera: true };
  } catch {
    // No camera (or it is refused): a voice visit is still possible.
    try {
      return { stream: await navigator.mediaDevices.getUserMedia({ audio: true }), camera: false };
    } catch {
      return { stream: null, camera: false };
    }
  }
}

/** Animate a meter element from the microphone; returns a stop function. */
export function micMeter(stream, meter, onSound) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!stream || !Ctx || !stream.getAudioTracks().length) return () => {};
  const ctx = new Ctx();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  let running = true;
  const bar = meter.querySelector("span");
  const tick = () => {
    if (!running) return;
    analyser.getByteTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
    const level = Math.min(100, Math.round((peak / 128) * 200));
    bar.style.width = `${level}%`;
    meter.setAttribute("aria-valuenow", String(level));
    if (level > 2) onSound?.(level);
    requestAnimationFrame(tick);
  };
  tick();
  return () => { running = false; ctx.close(); };
}

/** Play a short 440 Hz tone through the default output. */
export async function playTone(ms = 600) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  gain.gain.value = 0.2;
  osc.frequency.value = 440;
  osc.connect(gain).connect(ctx.destination);
  osc.start();
  await new Promise((r) => setTimeout(r, ms));
  osc.stop();
  await ctx.close();
}

/** Signaling round trip (ping → pong before join) and ICE gathering with the configured STUN servers. */
export async function connectivity(encounterId, stunUrls, timeoutMs = 5000) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const started = performance.now();
  const wsOk = await new Promise((resolve) => {
    let ws;
    const timer = setTimeout(() => { try { ws.close(); } catch { /* */ } resolve(false); }, timeoutMs);
    try {
      ws = new WebSocket(`${scheme}//${location.host}/ws/signal/${encounterId}`);
    } catch { clearTimeout(timer); resolve(false); return; }
    ws.onopen = () => ws.send(JSON.stringify({ v: 1, type: "ping", ts: Date.now() }));
    ws.onmessage = (ev) => {
      try { if (JSON.parse(ev.data).type === "pong") { clearTimeout(timer); ws.close(1000); resolve(true); } }
      catch { /* ignore */ }
    };
    ws.onerror = () => { clearTimeout(timer); resolve(false); };
  });
  const roundTripMs = Math.round(performance.now() - started);
  const pc = new RTCPeerConnection({ iceServers: stunUrls.length ? [{ urls: stunUrls }] : [] });
  let candidates = 0;
  pc.onicecandidate = (e) => { if (e.candidate) candidates += 1; };
  pc.createDataChannel("probe");
  await pc.setLocalDescription(await pc.createOffer());
  await waitForGathering(pc, 3000);
  pc.close();
  return { ok: wsOk && candidates > 0, wsOk, candidates, roundTripMs };
}
