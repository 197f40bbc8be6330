// /pharmacy: the live inbox (WebSocket /ws/pharmacy, never polled), claiming open prescriptions, and
// the actions on one prescription: accept / hand back / ask, dispense, pickup or delivery, delivery steps
// with proof of delivery (a signature drawn on the canvas, or a photo).
import { announce, busy, call, clearError, fmtDateTime, h, liveSocket, newKey, pageData, showError, t } from "./live.js";

const data = pageData();
const $ = (id) => document.getElementById(id);
const errorBox = $("pharmacy-error");
const status = $("pharmacy-status");
const alertBox = $("pharmacy-alert");
const state = { pharmacyId: data.pharmacies[0].id, items: [], seen: null, current: null, delivery: null, socket: null };

const fail = (err) => { showError(errorBox, err); errorBox.focus(); };
const ok = (text) => { clearError(errorBox); announce(status, text); };
const tz = () => data.pharmacies.find((p) => p.id === state.pharmacyId)?.timezone;

// --- live inbox ---------------------------------------------------------------------------------------

function setConn(s) {
  const node = $("conn");
  node.dataset.state = s;
  node.textContent = t(`conn_${s}`);
}

function renderInbox() {
  const list = $("inbox");
  $("inbox-count").textContent = String(state.items.length);
  list.replaceChildren();
  if (!state.items.length) list.append(h("li", { class: "hint" }, t("empty_inbox")));
  for (const it of state.items) {
    const open = h("button", { type: "button", class: "small", "data-testid": "inbox-open" }, t("open"));
    open.addEventListener("click", () => openRx(it.id));
    const fresh = state.fresh?.has(it.id);
    const badges = [h("span", { class: "badge", "data-testid": "inbox-status" }, t(`rx_${it.status}`))];
    if (it.delivery) badges.push(h("span", { class: "badge" }, `${t("delivery_label")}: ${t(`dl_${it.delivery.status}`)}`));
    else if (it.fulfilment === "pickup") badges.push(h("span", { class: "badge" }, t("pickup_label")));
    list.append(h("li", { class: `row${fresh ? " arrived" : ""}${state.current?.id === it.id ? " current" : ""}`,
      "data-testid": "inbox-row", "data-rx-id": it.id, "data-rx-number": it.rx_number },
    h("div", { class: "row-main" }, h("strong", {}, it.rx_number), " ", ...badges,
      h("div", { class: "muted" }, fmtDateTime(it.sent_at || it.created_at, tz()))), open));
  }
}

function onMessage(msg) {
  if (msg.type === "error") { fail(new Error(msg.message)); return; }
  if (msg.type !== "snapshot") return;
  const ids = new Set(msg.items.map((i) => i.id));
  const fresh = state.seen === null ? new Set() : new Set([...ids].filter((id) => !state.seen.has(id)));
  state.seen = ids;
  state.items = msg.items;
  state.fresh = fresh;
  renderInbox();
  if (fresh.size) {
    const numbers = msg.items.filter((i) => fresh.has(i.id)).map((i) => i.rx_number).join(", ");
    alertBox.textContent = `${t("new_rx")}: ${numbers}`;
    alertBox.hidden = false;
  }
  const cur = state.current && msg.items.find((i) => i.id === state.current.id);
  if (cur && (cur.status !== state.current.status || cur.delivery?.status !== state.delivery?.status)) {
    openRx(cur.id, { keepFocus: true });
  }
}

function connect() {
  state.socket?.close();
  state.seen = null;
  state.socket = liveSocket(`/ws/pharmacy?organization_id=${state.pharmacyId}`, { onMessage, onState: setConn });
}

const refresh = () => state.socket?.send("refresh");

// --- one prescription ---------------------------------------------------------------------------------

function show(id, visible) { $(id).hidden = !visible; }

async function openRx(id, { keepFocus = false } = {}) {
  try {
    const rx = await call("GET", `/api/v1/prescriptions/${id}`);
    const summary = state.items.find((i) => i.id === id);
    const prev = state.delivery && state.delivery.request_id === id ? state.delivery : null;
    state.current = rx;
    state.delivery = summary?.delivery ? await call("GET", `/api/v1/deliveries/${summary.delivery.id}`) : prev;
    renderDetail();
    if (!keepFocus) $("detail").focus();
  } catch (err) { fail(err); }
}

function dispensedOf(rx, itemId) {
  return rx.dispenses.filter((d) => d.item_id === itemId).reduce((s, d) => s + Number(d.quantity), 0);
}

function renderDetail() {
  const rx = state.current;
  show("detail-empty", false);
  show("detail-body", true);
  $("d-number").textContent = rx.rx_number;
  $("d-status").textContent = t(`rx_${rx.status}`);
  $("d-status").dataset.status = rx.status;
  const sig = $("d-signature");
  const v = rx.verification;
  sig.textContent = !v ? t("sig_none") : v.ok ? `✔ ${t("sig_ok")}` : `✖ ${t("sig_bad")} (${v.reason})`;
  sig.className = v?.ok ? "ok" : "error";
  sig.dataset.ok = String(Boolean(v?.ok));
  $("d-signed").textContent = fmtDateTime(rx.signed_at, tz());
  $("d-expires").textContent = fmtDateTime(rx.expires_at, tz());
  $("d-note").textContent = rx.note || "—";
  $("d-items").replaceChildren(...rx.items.map((i) => h("tr", {},
    h("td", {}, i.medication_name, h("br"), h("span", { class: "muted" }, i.medication_code)),
    h("td", {}, `${i.dose} ${i.dose_unit} ${i.route} ${i.frequency} × ${i.duration_days}d`,
      i.note_to_pharmacist ? h("div", { class: "muted" }, i.note_to_pharmacist) : ""),
    h("td", {}, i.quantity), h("td", {}, String(dispensedOf(rx, i.id))))));

  const s = rx.status;
  show("act-review", s === "sent");
  show("query-form", ["sent", "accepted", "dispensed_partial"].includes(s));
  show("dispense-form", ["accepted", "dispensed_partial"].includes(s));
  show("act-fulfil", ["dispensed", "dispensed_partial"].includes(s) && !rx.fulfilment);
  show("act-delivery", Boolean(state.delivery));
  if (["accepted", "dispensed_partial"].includes(s)) renderDispenseLines(rx);
  if (state.delivery) renderDelivery();
  renderInbox();
}

function renderDispenseLines(rx) {
  const box = $("dispense-lines");
  box.replaceChildren();
  rx.items.forEach((i, n) => {
    const left = Math.max(0, Number(i.quantity) - dispensedOf(rx, i.id));
    const qty = h("input", { id: `dq-${n}`, type: "number", min: "0", step: "any", value: String(left),
      "data-testid": "dispense-qty", "data-item-id": i.id });
    const lot = h("input", { id: `dl-${n}`, maxlength: "64", "data-testid": "dispense-lot" });
    const exp = h("input", { id: `de-${n}`, type: "date", "data-testid": "dispense-expiry" });
    box.append(h("fieldset", { class: "stack" }, h("legend", {}, `${i.medication_name} (${left} ${t("remaining")})`),
      h("label", { for: qty.id }, t("qty")), qty, h("label", { for: lot.id }, t("lot")), lot,
      h("label", { for: exp.id }, t("expiry")), exp));
  });
}

function renderDelivery() {
  const d = state.delivery;
  $("dl-status").textContent = t(`dl_${d.status}`);
  $("dl-status").dataset.status = d.status;
  const open = !["delivered", "failed", "returned"].includes(d.status);
  for (const b of $("act-delivery").querySelectorAll("button[data-step]")) b.hidden = !open;
  $("proof-form").hidden = !open;
}

async function act(button, fn, message) {
  clearError(errorBox);
  await busy(button, async () => {
    try {
      await fn();
      ok(message);
      refresh();
      await openRx(state.current.id, { keepFocus: true });
    } catch (err) { fail(err); }
  });
}

$("btn-accept").addEventListener("click", (ev) => act(ev.currentTarget,
  () => call("POST", `/api/v1/prescriptions/${state.current.id}/accept`, undefined, { idempotencyKey: newKey() }),
  t("accepted_ok")));

$("reject-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const reason = $("reject-reason").value.trim();
  if (!reason) { $("reject-reason").focus(); return; }
  act(ev.submitter, () => call("POST", `/api/v1/prescriptions/${state.current.id}/reject`, { reason }),
    t("rejected_ok"));
});

$("query-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const question = $("query-text").value.trim();
  if (!question) { $("query-text").focus(); return; }
  act(ev.submitter, async () => {
    await call("POST", `/api/v1/prescriptions/${state.current.id}/queries`, { question });
    $("query-text").value = "";
  }, t("query_ok"));
});

$("dispense-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const lines = [];
  for (const qty of $("dispense-lines").querySelectorAll("[data-testid=dispense-qty]")) {
    const fs = qty.closest("fieldset");
    const lot = fs.querySelector("[data-testid=dispense-lot]").value.trim();
    const expiry = fs.querySelector("[data-testid=dispense-expiry]").value;
    if (Number(qty.value) > 0) lines.push({ item_id: qty.dataset.itemId, quantity: qty.value, lot_number: lot, expiry });
  }
  if (!lines.length || lines.some((l) => !l.lot_number || !l.expiry)) { fail(new Error(t("need_lines"))); return; }
  act(ev.submitter, () => call("POST", `/api/v1/prescriptions/${state.current.id}/dispense`, { lines },
    { idempotencyKey: newKey() }), t("dispensed_ok"));
});

$("btn-ready").addEventListener("click", (ev) => act(ev.currentTarget,
  () => call("POST", `/api/v1/prescriptions/${state.current.id}/ready`), t("ready_ok")));

$("delivery-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const body = { recipient_name: $("dl-recipient").value.trim(), address: $("dl-address").value.trim(),
    postal_code: $("dl-postal").value.trim(), phone: $("dl-phone").value.trim(),
    courier: $("dl-courier").value.trim(), tracking_code: $("dl-tracking").value.trim() };
  act(ev.submitter, async () => {
    state.delivery = await call("POST", `/api/v1/prescriptions/${state.current.id}/delivery`, body,
      { idempotencyKey: newKey() });
  }, t("delivery_ok"));
});

async function step(button, statusValue, extra = {}) {
  clearError(errorBox);
  await busy(button, async () => {
    try {
      state.delivery = await call("POST", `/api/v1/deliveries/${state.delivery.id}/status`,
        { status: statusValue, ...extra });
      renderDelivery();
      ok(`${t("step_ok")} ${t(`dl_${statusValue}`)}`);
      refresh();
    } catch (err) { fail(err); }
  });
}

for (const b of $("act-delivery").querySelectorAll("button[data-step]")) {
  b.addEventListener("click", () => step(b, b.dataset.step));
}

// --- proof of delivery: a signature pad (pointer events) or a photo -----------------------------------

const canvas = $("proof-canvas");
const ctx = canvas.getContext("2d");
let drawn = false;
let drawing = false;
function blank() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#111";
  ctx.lineWidth = 2.5;
  ctx.lineCap = "round";
  drawn = false;
}
function pos(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left) * (canvas.width / r.width), (ev.clientY - r.top) * (canvas.height / r.height)];
}
canvas.addEventListener("pointerdown", (ev) => {
  drawing = true;
  canvas.setPointerCapture?.(ev.pointerId);
  ctx.beginPath();
  ctx.moveTo(...pos(ev));
});
canvas.addEventListener("pointermove", (ev) => {
  if (!drawing) return;
  ctx.lineTo(...pos(ev));
  ctx.stroke();
  drawn = true;
});
for (const name of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(name, () => { drawing = false; });
$("sig-clear").addEventListener("click", blank);
blank();

function readPhoto(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

$("proof-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const who = $("proof-recipient").value.trim();
  const file = $("proof-photo").files?.[0];
  if (!who || (!drawn && !file)) { fail(new Error(t("need_proof"))); return; }
  const proof = file ? await readPhoto(file) : canvas.toDataURL("image/png");
  await step(ev.submitter, "delivered", { proof_recipient: who, proof_kind: file ? "photo" : "signature", proof });
});

// --- claiming -----------------------------------------------------------------------------------------

$("claim-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const token = $("claim-token").value.trim();
  const body = token ? { token } : { rx_number: $("claim-number").value.trim(), access_code: $("claim-code").value.trim() };
  body.pharmacy_id = state.pharmacyId;
  clearError(errorBox);
  await busy(ev.submitter, async () => {
    try {
      const rx = await call("POST", "/api/v1/prescriptions/claim", body, { idempotencyKey: newKey() });
      for (const id of ["claim-token", "claim-number", "claim-code"]) $(id).value = "";
      ok(t("claimed_ok"));
      refresh();
      await openRx(rx.id);
    } catch (err) { fail(err); }
  });
});

$("pharmacy-select")?.addEventListener("change", (ev) => {
  state.pharmacyId = ev.target.value;
  state.current = null;
  show("detail-body", false);
  show("detail-empty", true);
  connect();
});

connect();
