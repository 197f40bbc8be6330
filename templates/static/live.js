// Shared helpers for the clinic pages: translated strings, API calls that keep the error envelope
// (including policy decisions), small DOM builders and a WebSocket that reconnects with backoff.
const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export const isKo = () => document.documentElement.lang === "ko";

let strings = null;
// Strings come from <script type="application/json" id="page-i18n"> (and "page-i18n-common"), rendered through _() by the server.
export function t(key) {
  if (strings === null) {
    strings = {};
    for (const id of ["page-i18n-errors", "page-i18n-common", "page-i18n", "page-i18n-symptoms"]) {
      const node = document.getElementById(id);
      if (node) Object.assign(strings, JSON.parse(node.textContent));
    }
  }
  return strings[key] ?? key;
}

export function pageData(id = "page-data") {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

export class CallError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.fields = body?.error?.fields ?? {};
    this.decision = body?.error?.decision ?? null;
  }
}

export async function call(method, path, body, { idempotencyKey } = {}) {
  const headers = { "Accept": "application/json", "X-CSRF-Token": csrf() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let resp;
  try {
    resp = await fetch(path, { method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new CallError(0, { error: { code: "network", message: t("network_error") } });
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) throw new CallError(resp.status, data);
  return data;
}

export const newKey = () => crypto.randomUUID();

// One readable sentence for an error: policy reasons in the page language, else the message and fields.
// One sentence in the page's language for a failed call: the page's words for the API error code (err_<code>),
// else for what the HTTP status means, else the page's general sentence (err_generic). Never the server's
// English message: that is for developers and logs.
export function errorSentence(err) {
  const has = (key) => t(key) !== key;
  if (err?.code && has(`err_${err.code}`)) return t(`err_${err.code}`);
  const s = err?.status;
  if (s === 0 || err?.code === "network") return t("err_network");
  const general = s === 401 ? "err_unauthenticated" : s === 403 ? "err_forbidden" : s === 404 ? "err_not_found"
    : s === 429 ? "err_rate_limited" : s >= 500 ? "err_server" : null;
  if (general) return t(general);
  if (has("err_generic")) return t("err_generic");
  return t(s === 409 ? "err_conflict" : s === 422 || s === 400 ? "err_invalid" : "err_unknown");
}

export function errorText(err) {
  if (err?.decision?.reasons?.length) {
    return err.decision.reasons.map((r) => (isKo() ? r.message_ko || r.message : r.message || r.message_ko))
      .join(" ");
  }
  if (err instanceof CallError) return errorSentence(err);
  return err?.message ?? String(err);  // the page's own words (new Error(t(...)))
}

// Show an error (with policy reasons as a list) in a container that has role="alert".
export function showError(box, err) {
  box.replaceChildren();
  box.hidden = false;
  if (err?.decision?.reasons?.length) {
    box.append(h("p", {}, t("policy_refused")));
    const ul = h("ul", { "data-testid": "policy-reasons" });
    for (const r of err.decision.reasons) {
      ul.append(h("li", {}, (isKo() ? r.message_ko || r.message : r.message || r.message_ko) + " ",
        h("code", {}, r.rule ?? "")));
    }
    box.append(ul);
  } else {
    box.append(h("p", {}, errorText(err)));
  }
}

export function clearError(box) {
  box.replaceChildren();
  box.hidden = true;
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const locale = () => (isKo() ? "ko-KR" : "en-GB");

export function fmtDateTime(iso, timeZone) {
  if (!iso) return "";
  const opts = { dateStyle: "medium", timeStyle: "short" };
  if (timeZone) opts.timeZone = timeZone;
  return new Intl.DateTimeFormat(locale(), opts).format(new Date(iso));
}

export function fmtTime(iso, timeZone) {
  if (!iso) return "";
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (timeZone) opts.timeZone = timeZone;
  return new Intl.DateTimeFormat(locale(), opts).format(new Date(iso));
}

// Announce a short message to screen readers through a polite live region.
export function announce(region, text) {
  if (!region) return;
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 30);
}

// Busy state on a button while work runs: disabled, aria-busy, and a label saying so.
export async function busy(button, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = t("working");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

// A WebSocket that reconnects with exponential backoff (1 s … 30 s) and reports its state:
// "connecting" | "open" | "reconnecting" | "closed".
export function liveSocket(path, { onMessage, onState }) {
  let ws = null;
  let attempt = 0;
  let stopped = false;
  let timer = null;
  const url = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;

  function open() {
    onState?.(attempt === 0 ? "connecting" : "reconnecting");
    ws = new WebSocket(url());
    ws.addEventListener("open", () => { attempt = 0; onState?.("open"); });
    ws.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      onMessage(msg);
    });
    ws.addEventListener("close", () => {
      if (stopped) { onState?.("closed"); return; }
      attempt += 1;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
      onState?.("reconnecting");
      timer = setTimeout(open, delay);
    });
  }
  open();
  return {
    send(text) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(text); },
    close() { stopped = true; clearTimeout(timer); ws?.close(); },
  };
}
