// /account for patients (and guardians): their own record's name parts and birth date, read through the API
// (which authorizes and audits the read), shown as check-in will ask for them.
import { call, h, isKo, pageData, t } from "./live.js";

const list = document.getElementById("account-records");
const { patient_ids: ids = [] } = pageData("account-data");

function longDate(iso) {
  // A birth date is a calendar day, not an instant: format it in UTC so no time zone moves it.
  return new Intl.DateTimeFormat(isKo() ? "ko-KR" : "en-GB", { dateStyle: "long", timeZone: "UTC" })
    .format(new Date(`${iso}T00:00:00Z`));
}

function record(p) {
  return h("li", { "data-testid": "account-record", "data-patient-id": p.id },
    h("dl", { class: "facts" },
      h("dt", {}, t("family_name")), h("dd", { translate: "no", "data-testid": "account-family" }, p.family_name),
      h("dt", {}, t("given_name")), h("dd", { translate: "no", "data-testid": "account-given" }, p.given_name),
      h("dt", {}, t("birth_date")),
      h("dd", { "data-testid": "account-birth-date" }, h("time", { datetime: p.birth_date }, longDate(p.birth_date)))));
}

try {
  const records = await Promise.all(ids.map((id) => call("GET", `/api/v1/patients/${id}`)));
  list.replaceChildren(...records.map(record));
} catch {
  list.replaceChildren();
  document.getElementById("account-records-error").hidden = false;
} finally {
  list.removeAttribute("aria-busy");
}
