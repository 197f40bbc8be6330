// /rx/{id}: show the step times in the reader's own time zone and language (the server writes UTC).
const locale = document.documentElement.lang === "ko" ? "ko-KR" : "en-GB";
const fmt = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" });
for (const node of document.querySelectorAll("time[datetime]")) {
  const d = new Date(node.getAttribute("datetime"));
  if (!Number.isNaN(d.getTime())) node.textContent = fmt.format(d);
}
