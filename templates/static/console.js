// Staff pages. /console: the doctor's live consult queue over /ws/queue (never polled) with a visual and
// audible alert on arrival, claim / release / transfer / priority. /admin: members and the audit trail.
import { announce, busy, call, clearError, errorSentence, fmtDateTime, fmtTime, h, liveSocket, pageData, showError, t }
  from "./live.js";

const $ = (id) => document.getElementById(id);

// ===================================================================================== console

// A translated string with {name}-style placeholders filled in.
const fill = (key, vars) => t(key).replace(/\{(\w+)\}/g, (m, k) => (k in vars ? vars[k] : m));

// Symptom codes come from the check-in questionnaire; an unknown one is shown as words, not as a code.
const symptomLabel = (code) => (t(`sym_${code}`) !== `sym_${code}` ? t(`sym_${code}`) : code.replaceAll("_", " "));

// How a queue entry reads for the signed-in clinician: who holds the patient and in what state.
function describe(it, me) {
  const holder = !it.claimed_by_id ? "none" : it.claimed_by_id === me ? "me" : "other";
  const owner = !it.assigned_practitioner_id ? "shared" : it.assigned_practitioner_id === me ? "me" : "other";
  const claimer = it.claimed_by_name || t("another_clinician");
  let state;
  if (it.status === "in_consult") {
    state = holder === "me" ? t("state_consult_me") : fill("state_consult_other", { name: claimer });
  } else if (holder === "me") state = t("state_claimed_me");
  else if (holder === "other") state = fill("state_claimed_other", { name: claimer });
  else state = t("state_waiting");
  // Whose queue the patient waits in matters only while nobody has them.
  const ownerText = holder !== "none" ? ""
    : owner === "shared" ? t("owner_shared") : owner === "me" ? t("owner_me")
    : fill("owner_other", { name: it.assigned_practitioner_name || t("another_clinician") });
  return { holder, owner, state, ownerText };
}

function initConsole() {
  const data = pageData();
  const errorBox = $("queue-error");
  const status = $("queue-status");
  const alertBox = $("queue-alert");
  const state = { org: data.orgs[0].id, scope: "all", seen: null, rows: new Map(), socket: null, muted: false,
    members: [], highlight: new Set(), last: null, current: null };
  const tz = () => data.orgs.find((o) => o.id === state.org)?.timezone;
  state.muted = localStorage.getItem("console-muted") === "1";

  function fail(err) {
    if (err?.decision?.reasons?.length) showError(errorBox, err); // the law's reasons, already translated
    else {
      errorBox.replaceChildren(h("p", { "data-testid": "queue-error-text" }, errorSentence(err)));
      errorBox.hidden = false;
    }
    errorBox.focus();
    // A refusal because the queue moved means this view missed an update: fetch a fresh snapshot.
    if (err?.status === 409) connect();
  }

  function setConn(s) {
    $("conn").dataset.state = s;
    $("conn").textContent = t(`conn_${s}`);
  }

  function setMute(m) {
    state.muted = m;
    localStorage.setItem("console-muted", m ? "1" : "0");
    $("mute").setAttribute("aria-pressed", String(m));
    $("mute").textContent = m ? t("unmute") : t("mute");
  }

  let audio = null;
  function beep() {
    if (state.muted) return;
    try {
      audio = audio ?? new AudioContext();
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.3, audio.currentTime + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.35);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.4);
    } catch { /* audio is a nicety; the visual alert stays */ }
  }

  async function loadMembers() {
    try {
      const res = await call("GET", `/api/v1/organizations/${state.org}/members`);
      state.members = res.items.filter((m) => m.role === "clinician" && m.user_id !== data.me);
    } catch { state.members = []; }
  }

  // Run one queue action: busy button, then a spoken confirmation or one translated error sentence.
  function act(button, work, done) {
    return busy(button, async () => {
      clearError(errorBox);
      try {
        await work();
        done();
      } catch (err) { fail(err); }
    });
  }

  function rowFor(it) {
    const d = describe(it, data.me);
    const can = new Set(it.actions ?? []);
    const id = it.encounter_id;
    const li = h("li", { class: `queue-row prio-${it.priority} holder-${d.holder}${state.highlight.has(id) ? " arrived" : ""}`,
      tabindex: "-1", "data-testid": "queue-row", "data-encounter-id": id, "data-status": it.status,
      "data-holder": d.holder, "data-owner": d.owner, "aria-labelledby": `qp-${id}` });
    const when = it.scheduled_start ? `${t("scheduled")} ${fmtTime(it.scheduled_start, tz())}` : t("walk_in");
    li.append(h("div", { class: "row-main" },
      h("div", { class: "row-head" },
        h("span", { class: `prio prio-${it.priority}`, title: t(`p${it.priority}`), "data-testid": "queue-priority" },
          h("span", { class: "visually-hidden" }, `${t("priority")} `), String(it.priority)),
        h("strong", { id: `qp-${id}`, class: "user-text", "data-testid": "queue-patient" }, it.patient_name),
        h("span", { class: "muted" }, `${t("age")} ${it.age}`)),
      h("div", { class: "row-badges" },
        h("span", { class: `badge state state-${d.holder}`, "data-testid": "queue-state" }, d.state),
        d.ownerText ? h("span", { class: `badge owner owner-${d.owner}`, "data-testid": "queue-owner" }, d.ownerText) : ""),
      h("div", { class: "muted" }, `${when} · ${t("waiting")} `,
        h("span", { "data-testid": "queue-waiting" }, `${it.waiting_minutes} ${t("minutes")}`), ` · ${t(`mode_${it.mode}`)}`),
      it.chief_complaint ? h("div", { class: "user-text complaint", "data-testid": "queue-complaint" }, it.chief_complaint) : "",
      it.symptoms.length ? h("div", { class: "muted", "data-testid": "queue-symptoms" }, `${t("symptoms")}: `,
        it.symptoms.map(symptomLabel).join(", ")) : ""));

    const actions = h("div", { class: "actions" });
    if (can.has("claim")) {
      const claim = h("button", { type: "button", "data-testid": "claim-button" }, t("claim"));
      claim.addEventListener("click", () => act(claim, () => call("POST", `/api/v1/encounters/${id}/claim`), () => {
        announce(status, t("claimed"));
        location.assign(`/console/visit/${id}`);
      }));
      actions.append(claim);
    }
    if (can.has("open")) {
      actions.append(h("a", { class: "button", href: `/console/visit/${id}`, "data-testid": "open-visit" }, t("open_visit")));
    }
    if (can.has("release")) {
      const rel = h("button", { type: "button", class: "secondary", "data-testid": "release-button" }, t("release"));
      rel.addEventListener("click", () => act(rel, () => call("POST", `/api/v1/encounters/${id}/release`),
        () => announce(status, t("released"))));
      actions.append(rel);
    }
    if (can.has("priority")) {
      // A separate button, so stepping through the options with the keyboard does not re-triage each time.
      const pid = `prio-${id}`;
      const sel = h("select", { id: pid, "data-testid": "priority-select" },
        [1, 2, 3, 4, 5].map((n) => h("option", { value: n, selected: n === it.priority }, t(`p${n}`))));
      const set = h("button", { type: "button", class: "secondary small", "data-testid": "priority-button" }, t("set_priority"));
      set.addEventListener("click", () => act(set,
        () => call("POST", `/api/v1/encounters/${id}/priority`, { priority: Number(sel.value) }),
        () => announce(status, t("priority_set"))));
      actions.append(h("span", { class: "field" }, h("label", { for: pid, class: "small-label" }, t("priority")), sel, set));
    }
    const colleagues = state.members.filter((m) => m.user_id !== it.assigned_practitioner_id);
    if (can.has("transfer") && colleagues.length) {
      const tid = `to-${id}`;
      const to = h("select", { id: tid, "data-testid": "transfer-select" },
        colleagues.map((m) => h("option", { value: m.user_id }, m.display_name)));
      const go = h("button", { type: "button", class: "secondary small", "data-testid": "transfer-button" }, t("transfer"));
      go.addEventListener("click", () => act(go,
        () => call("POST", `/api/v1/encounters/${id}/transfer`, { to_user_id: to.value }),
        () => announce(status, t("transferred"))));
      actions.append(h("span", { class: "field" }, h("label", { for: tid, class: "small-label" }, t("transfer_to")), to, go));
    }
    // Each control names its patient to screen readers ("Claim, 김민지"), not just "Claim" again and again.
    for (const c of actions.querySelectorAll("button, a, select")) c.setAttribute("aria-describedby", `qp-${id}`);
    if (actions.childElementCount) li.append(actions);
    return li;
  }

  function render(items) {
    const list = $("queue");
    const active = document.activeElement;
    const activeRow = active?.closest?.(".queue-row")?.dataset.encounterId;
    const activeTestId = active?.dataset?.testid;
    const keep = new Map();
    const membersKey = state.members.map((m) => m.user_id).join();
    for (const it of items) {
      const key = JSON.stringify([it, state.highlight.has(it.encounter_id), membersKey]);
      const old = state.rows.get(it.encounter_id);
      keep.set(it.encounter_id, old && old.key === key ? old : { key, node: rowFor(it) });
    }
    list.replaceChildren(...items.map((it) => keep.get(it.encounter_id).node));
    state.rows = keep;
    $("queue-count").textContent = String(items.filter((i) => i.status === "checked_in").length);
    $("queue-empty").hidden = items.length > 0;
    // Keep the keyboard where it was: the same control if the row still has it, else the row itself.
    if (activeRow && !list.contains(active)) {
      const row = list.querySelector(`[data-encounter-id="${activeRow}"]`);
      (row?.querySelector(`[data-testid="${activeTestId}"]`) ?? row)?.focus();
    }
  }

  function onMessage(msg) {
    if (msg.type === "error") { fail({ code: msg.code }); return; }
    if (msg.type !== "snapshot") return;
    const waiting = msg.items.filter((i) => i.status === "checked_in");
    const ids = new Set(waiting.map((i) => i.encounter_id));
    const arrivals = state.seen === null ? [] : waiting.filter((i) => !state.seen.has(i.encounter_id));
    state.seen = ids;
    if (arrivals.length) {
      for (const a of arrivals) state.highlight.add(a.encounter_id);
      alertBox.textContent = `${t("arrived")}: ${arrivals.map((a) => a.patient_name).join(", ")}`;
      alertBox.hidden = false;
      beep();
      setTimeout(() => {
        for (const a of arrivals) state.highlight.delete(a.encounter_id);
        render(state.last ?? []);
      }, 15000);
    }
    state.last = msg.items;
    render(msg.items);
  }

  function connect() {
    state.socket?.close();
    // A fresh snapshot after a reconnect is not a wave of arrivals: only patients new since then alert.
    state.seen = state.last ? new Set(state.last.filter((i) => i.status === "checked_in").map((i) => i.encounter_id)) : null;
    // The socket being replaced may still report its close (or a last message): only the current one counts.
    const current = {};
    state.current = current;
    state.socket = liveSocket(`/ws/queue?organization_id=${state.org}&scope=${state.scope}`, {
      onMessage: (msg) => { if (state.current === current) onMessage(msg); },
      onState: (s) => { if (state.current === current) setConn(s); },
    });
  }

  function reset() {
    state.last = null;
    state.rows = new Map();
    connect();
  }

  $("mute").addEventListener("click", () => setMute(!state.muted));
  for (const r of document.querySelectorAll("input[name=scope]")) {
    r.addEventListener("change", () => { if (r.checked) { state.scope = r.value; reset(); } });
  }
  $("org-select")?.addEventListener("change", async (ev) => { state.org = ev.target.value; await loadMembers(); reset(); });
  // Browsers only allow sound after a user gesture: the first click or key press anywhere unlocks it.
  const unlock = () => { if (!audio && !state.muted) { try { audio = new AudioContext(); } catch { /* none */ } } };
  document.addEventListener("pointerdown", unlock, { once: true });
  document.addEventListener("keydown", unlock, { once: true });
  setMute(state.muted);
  connect();
  loadMembers().then(() => render(state.last ?? []));
}

// ===================================================================================== admin

function initAdmin() {
  const data = pageData();
  const errorBox = $("admin-error");
  const orgSel = $("admin-org");
  const org = () => orgSel?.value ?? data.orgs[0]?.id;
  const fail = (err) => { showError(errorBox, err); };

  async function loadMembers() {
    const list = $("members");
    if (!list || !org()) return;
    list.setAttribute("aria-busy", "true");
    try {
      const res = await call("GET", `/api/v1/organizations/${org()}/members`);
      list.replaceChildren(...res.items.map((m) => h("li", { class: "row", "data-testid": "member-row" },
        h("span", {}, h("strong", {}, m.display_name), h("br"), h("span", { class: "muted" }, m.email)),
        h("span", { class: "badge" }, t(`role_${m.role}`)))));
    } catch (err) { fail(err); } finally { list.removeAttribute("aria-busy"); }
  }

  async function loadAudit(button) {
    const body = $("audit-rows");
    const q = new URLSearchParams({ limit: "100" });
    if (org()) q.set("organization_id", org());
    const action = $("audit-action").value.trim();
    if (action) q.set("action", action);
    await busy(button, async () => {
      try {
        const res = await call("GET", `/api/v1/audit?${q}`);
        body.replaceChildren(...res.items.map((e) => h("tr", { "data-testid": "audit-row" },
          h("td", {}, String(e.seq)), h("td", {}, fmtDateTime(e.at)), h("td", {}, e.actor_label || e.actor_kind),
          h("td", {}, h("code", {}, e.action)), h("td", {}, e.object_type), h("td", {}, e.outcome ?? ""))));
        $("audit-count").textContent = String(res.items.length);
      } catch (err) { fail(err); }
    });
  }

  orgSel?.addEventListener("change", loadMembers);
  $("audit-form")?.addEventListener("submit", (ev) => { ev.preventDefault(); loadAudit(ev.submitter); });
  loadMembers();
}

if ($("admin-page")) initAdmin();
else if ($("queue")) initConsole();
