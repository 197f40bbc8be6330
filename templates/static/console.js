// Staff pages. /console: the doctor's live consult queue over /ws/queue (never polled) with a visual and
// audible alert on arrival, claim / release / transfer / priority. /admin: members and the audit trail.
import { announce, busy, call, clearError, fmtDateTime, fmtTime, h, liveSocket, pageData, showError, t } from "./live.js";

const $ = (id) => document.getElementById(id);

// ===================================================================================== console

function initConsole() {
  const data = pageData();
  const errorBox = $("queue-error");
  const status = $("queue-status");
  const alertBox = $("queue-alert");
  const state = { org: data.orgs[0].id, scope: "all", seen: null, rows: new Map(), socket: null, muted: false,
    members: [], highlight: new Set() };
  const tz = () => data.orgs.find((o) => o.id === state.org)?.timezone;
  state.muted = localStorage.getItem("console-muted") === "1";

  const fail = (err) => { showError(errorBox, err); errorBox.focus(); };

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

  function rowFor(it) {
    const mine = it.claimed_by_id === data.me;
    const claimedByOther = it.claimed_by_id && !mine;
    const li = h("li", { class: `queue-row prio-${it.priority}${state.highlight.has(it.encounter_id) ? " arrived" : ""}`,
      "data-testid": "queue-row", "data-encounter-id": it.encounter_id, "data-status": it.status });
    const when = it.scheduled_start ? `${t("scheduled")} ${fmtTime(it.scheduled_start, tz())}` : t("walk_in");
    const claimText = mine ? t("claimed_by_you") : claimedByOther ? `${t("claimed_by")} ${it.claimed_by_name}` : "";
    li.append(h("div", { class: "row-main" },
      h("div", {}, h("span", { class: `prio prio-${it.priority}`, title: t("priority") }, String(it.priority)), " ",
        h("strong", { "data-testid": "queue-patient" }, it.patient_name), ` · ${t("age")} ${it.age}`, " ",
        h("span", { class: "badge" }, t(`st_${it.status}`)), " ",
        h("span", { class: "badge" }, it.queue === "shared" ? t("shared_queue") : t("personal_queue"))),
      h("div", { class: "muted" }, `${when} · ${t("waiting")} `,
        h("span", { "data-testid": "queue-waiting" }, `${it.waiting_minutes} ${t("minutes")}`), ` · ${t(`mode_${it.mode}`)}`),
      it.chief_complaint ? h("div", { "data-testid": "queue-complaint" }, it.chief_complaint) : "",
      it.symptoms.length ? h("div", { class: "muted" }, `${t("symptoms")}: `,
        it.symptoms.map((s) => t(`sym_${s}`)).join(", ")) : "",
      claimText ? h("div", { class: mine ? "ok" : "muted", "data-testid": "queue-claimed-by" }, claimText) : ""));

    const actions = h("div", { class: "actions" });
    const id = it.encounter_id;
    if (!it.claimed_by_id || claimedByOther) {
      // Shown even when someone else holds the patient so a stale view still gets a clear answer.
      const claim = h("button", { type: "button", "data-testid": "claim-button", hidden: claimedByOther }, t("claim"));
      claim.addEventListener("click", () => busy(claim, async () => {
        clearError(errorBox);
        try {
          await call("POST", `/api/v1/encounters/${id}/claim`);
          announce(status, t("claimed"));
          location.assign(`/console/visit/${id}`);
        } catch (err) {
          if (err.status === 409) err.message = `${t("claim_conflict")} (${err.message})`;
          fail(err);
        }
      }));
      actions.append(claim);
    }
    if (mine) {
      actions.append(h("a", { class: "button", href: `/console/visit/${id}`, "data-testid": "open-visit" }, t("open_visit")));
      if (it.status === "checked_in") {
        const rel = h("button", { type: "button", class: "secondary", "data-testid": "release-button" }, t("release"));
        rel.addEventListener("click", () => busy(rel, async () => {
          try { await call("POST", `/api/v1/encounters/${id}/release`); announce(status, t("released")); } catch (err) { fail(err); }
        }));
        actions.append(rel);
      }
    }
    if (it.status === "checked_in" && !claimedByOther) {
      const pid = `prio-${id}`;
      const sel = h("select", { id: pid, "data-testid": "priority-select" },
        [1, 2, 3, 4, 5].map((n) => h("option", { value: n, selected: n === it.priority }, t(`p${n}`))));
      sel.addEventListener("change", async () => {
        try {
          await call("POST", `/api/v1/encounters/${id}/priority`, { priority: Number(sel.value) });
          announce(status, t("priority_set"));
        } catch (err) { fail(err); }
      });
      actions.append(h("span", { class: "field" }, h("label", { for: pid, class: "small-label" }, t("priority")), sel));
      if (state.members.length) {
        const tid = `to-${id}`;
        const to = h("select", { id: tid, "data-testid": "transfer-select" },
          state.members.map((m) => h("option", { value: m.user_id }, m.display_name)));
        const go = h("button", { type: "button", class: "secondary small", "data-testid": "transfer-button" }, t("transfer"));
        go.addEventListener("click", () => busy(go, async () => {
          try {
            await call("POST", `/api/v1/encounters/${id}/transfer`, { to_user_id: to.value });
            announce(status, t("transferred"));
          } catch (err) { fail(err); }
        }));
        actions.append(h("span", { class: "field" }, h("label", { for: tid, class: "small-label" }, t("transfer_to")), to, go));
      }
    }
    li.append(actions);
    return li;
  }

  function render(items) {
    const list = $("queue");
    const active = document.activeElement;
    const activeRow = active?.closest?.(".queue-row")?.dataset.encounterId;
    const activeTestId = active?.dataset?.testid;
    const keep = new Map();
    for (const it of items) {
      const key = JSON.stringify([it, state.highlight.has(it.encounter_id), state.members.length]);
      const old = state.rows.get(it.encounter_id);
      keep.set(it.encounter_id, old && old.key === key ? old : { key, node: rowFor(it) });
    }
    list.replaceChildren(...items.map((it) => keep.get(it.encounter_id).node));
    state.rows = keep;
    $("queue-count").textContent = String(items.filter((i) => i.status === "checked_in").length);
    $("queue-empty").hidden = items.length > 0;
    if (activeRow && activeTestId && !list.contains(active)) {
      list.querySelector(`[data-encounter-id="${activeRow}"] [data-testid="${activeTestId}"]`)?.focus();
    }
  }

  function onMessage(msg) {
    if (msg.type === "error") { fail(new Error(msg.message)); return; }
    if (msg.type !== "snapshot") return;
    const waiting = msg.items.filter((i) => i.status === "checked_in");
    const ids = new Set(waiting.map((i) => i.encounter_id));
    const arrivals = state.seen === null ? [] : waiting.filter((i) => !state.seen.has(i.encounter_id));
    state.seen = ids;
    if (arrivals.length) {
      for (const a of arrivals) state.highlight.add(a.encounter_id);
      const text = `${t("arrived")}: ${arrivals.map((a) => a.patient_name).join(", ")}`;
      alertBox.textContent = text;
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
    state.seen = null;
    state.rows = new Map();
    state.socket = liveSocket(`/ws/queue?organization_id=${state.org}&scope=${state.scope}`, { onMessage, onState: setConn });
  }

  $("mute").addEventListener("click", () => setMute(!state.muted));
  for (const r of document.querySelectorAll("input[name=scope]")) {
    r.addEventListener("change", () => { if (r.checked) { state.scope = r.value; connect(); } });
  }
  $("org-select")?.addEventListener("change", async (ev) => { state.org = ev.target.value; await loadMembers(); connect(); });
  // Browsers only allow sound after a user gesture: the first click anywhere unlocks it.
  document.addEventListener("pointerdown", () => { if (!audio && !state.muted) { try { audio = new AudioContext(); } catch { /* none */ } } },
    { once: true });
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
