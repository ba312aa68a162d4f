// #/subjects/NAME: facts, templates, enroll, history and erasure of one subject.

import { api, can, errorText, subjectPath } from "../api.js";
import { h, heading, facts, table, row, alertBox, say, timeEl, show, qualityText, image } from "../dom.js";
import { go } from "../router.js";
import { enrollSection } from "./enroll.js";

function listOf(value) {
  if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
  return value == null ? "—" : show(value);
}

function thumbs(path, name, templates) {
  if (!templates.length) return h("p", { class: "hint", text: "No template is enrolled yet." });
  return h("ul", { class: "thumbs" }, templates.map((t) => h("li", null, h("figure", null,
    image({ src: `${path}/templates/${t.id}/crop`, alt: `Template ${t.id} of ${name}` }),
    h("figcaption", null, h("span", { text: t.source_name || "—" }), h("br"),
      `${qualityText(t)} · `, timeEl(t.created_at))))));
}

export async function render(view, [name], ctx) {
  heading(view, name);
  const path = subjectPath(name);
  const errors = alertBox();
  view.append(errors);
  let subject;
  try {
    subject = await api(path);
  } catch (err) {
    if (ctx.alive()) say(errors, errorText(err));
    return;
  }
  if (!ctx.alive()) return;
  const factsHost = h("div", { class: "facts-host" });
  const drawFacts = () => factsHost.replaceChildren(facts([
    ["Legal basis", subject.legal_basis || "—"],
    ["Watch lists", listOf(subject.watchlists)],
    ["Enrolled at", timeEl(subject.created_at, true)],
    ["Models", listOf(subject.models)],
  ]));
  drawFacts();
  view.append(factsHost);

  const gallery = h("div", { class: "gallery" }, h("p", { class: "hint", text: "Loading the templates…" }));
  const templErrors = alertBox();
  view.append(h("section", { "aria-labelledby": "templates-h" },
    h("h2", { id: "templates-h", text: "Templates" }),
    h("p", { class: "small", text: "Viewing templates is recorded in the audit ledger." }),
    templErrors, gallery));
  let templates = [];
  async function refresh() {
    try {
      templates = await api(`${path}/templates`);
      say(templErrors, "");
    } catch (err) {
      if (ctx.alive()) say(templErrors, errorText(err));
      throw err;
    }
    if (ctx.alive()) gallery.replaceChildren(thumbs(path, name, templates));
    return templates;
  }
  refresh().catch(() => gallery.replaceChildren());

  const writer = can("subjects.write");
  async function afterEnroll() {
    const list = await refresh();
    api(path).then((fresh) => { if (ctx.alive()) { subject = fresh; drawFacts(); } }, () => {});
    loadHistory();
    return list;
  }
  if (writer) view.append(enrollSection({ path, name, refresh: afterEnroll }, ctx));

  const historyHost = h("div");
  view.append(h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h", text: "History" }), historyHost));
  const loadHistory = () => api(`${path}/history`).then((entries) => {
    if (!ctx.alive()) return;
    const { wrap } = table(`History of ${name}`, ["Time", "Action", "Detail", "By"], entries.map((e) => row(
      timeEl(e.at), e.action, h("code", { class: "detail", text: show(e.detail) }),
      `${e.actor}${e.role ? ` (${e.role})` : ""}`)));
    historyHost.replaceChildren(entries.length ? wrap : h("p", { class: "hint", text: "No history recorded." }));
  }, (err) => {
    if (ctx.alive()) historyHost.replaceChildren(h("p", { role: "alert", class: "error", text: errorText(err) }));
  });
  loadHistory();

  if (writer) view.append(erasure(name, path, () => templates.length || subject.templates || 0, ctx));
}

function erasure(name, path, count, ctx) {
  const opener = h("button", { type: "button", class: "bad", text: `Erase ${name}…` });
  const text = h("p");
  const errors = alertBox();
  const erase = h("button", { type: "button", class: "bad", text: "Erase permanently" });
  const cancel = h("button", { type: "button", class: "quiet", text: "Cancel", autofocus: true });
  const dialog = h("dialog", { "aria-labelledby": "erase-h", class: "erase" },
    h("h2", { id: "erase-h", text: `Erase ${name}?` }), text, errors,
    h("div", { class: "actions" }, erase, cancel));
  opener.addEventListener("click", () => {
    const n = count();
    text.textContent = `This permanently deletes ${name}'s ${n} ${n === 1 ? "template" : "templates"} (their embeddings and ` +
      "thumbnails), the evidence crops of events that named them, and their watch-list memberships. " +
      "The audit ledger keeps only hashes and the fact of the erasure. This cannot be undone.";
    say(errors, "");
    dialog.showModal();
    cancel.focus();
  });
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { if (ctx.alive() && opener.isConnected) opener.focus(); });
  erase.addEventListener("click", async () => {
    erase.disabled = true;
    try {
      const done = await api(path, { method: "DELETE" });
      if (!ctx.alive()) return;
      const message = `${done.subject || name} erased: ${done.templates} templates and ` +
        `${done.evidence_crops} evidence crops deleted (ledger entry #${done.ledger_seq}).`;
      dialog.close();
      go("#/subjects", message);
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    } finally {
      erase.disabled = false;
    }
  });
  ctx.onLeave(() => { if (dialog.open) dialog.close(); });
  return h("section", { class: "danger", "aria-labelledby": "erase-section-h" },
    h("h2", { id: "erase-section-h", text: "Erasure" }), opener, dialog);
}
