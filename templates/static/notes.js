// The doctor's consultation note panel on the visit page.

import { api, ApiError } from "/static/api.js";

const $ = (id) => document.getElementById(id);

export async function notePanel({ encounterId: eid, strings: S }) {
  // The notes API may not exist in every deployment: a 404 just leaves the panel read-only.
  const form = $("note-form");
  let revision = 0;
  try {
    const note = await api("GET", `/api/v1/encounters/${eid}/note`);
    revision = note.revision;
    for (const k of ["subjective", "objective", "assessment", "plan"]) form[k].value = note[k] || "";
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) $("note-status").textContent = S.note_unavailable;
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { revision };
    for (const k of ["subjective", "objective", "assessment", "plan"]) body[k] = form[k].value;
    try {
      const note = await api("PUT", `/api/v1/encounters/${eid}/note`, body);
      revision = note.revision;
      $("note-status").textContent = S.note_saved;
    } catch (err) {
      $("note-status").textContent = err instanceof ApiError && err.status === 404 ? S.note_unavailable : `${S.note_failed} ${err.message}`;
    }
  });
}
