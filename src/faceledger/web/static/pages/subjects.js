// #/subjects: the gallery's subjects (filterable), and a form for a new one.

import { api, can, errorText, subjectRoute } from "../api.js";
import { h, heading, field, table, row, status, alertBox, say, timeEl, newId, plural } from "../dom.js";
import { go } from "../router.js";

function listOf(value) {
  return Array.isArray(value) ? value.join(", ") : value == null ? "" : String(value);
}

export async function render(view, _params, ctx) {
  heading(view, "Subjects");
  const errors = alertBox();
  const count = status("Loading the subjects…");
  const filter = field("Filter subjects", { type: "search", autocomplete: "off" },
    "By name, legal basis or watch list.");
  const { wrap, body } = table("Subjects", ["Name", "Templates", "Watch lists", "Legal basis", "Enrolled"], []);
  view.append(errors, filter.field, count, wrap);
  if (can("subjects.write")) view.append(newSubjectForm(ctx));

  let subjects = [];
  function draw() {
    const q = filter.input.value.trim().toLowerCase();
    const shown = subjects.filter((s) => !q || [s.name, s.legal_basis, listOf(s.watchlists)]
      .some((t) => String(t || "").toLowerCase().includes(q)));
    body.replaceChildren(...shown.map((s) => row(
      h("a", { href: subjectRoute(s.name), text: s.name }),
      String(s.templates ?? 0),
      listOf(s.watchlists) || "—",
      s.legal_basis || "—",
      timeEl(s.created_at),
    )));
    if (!subjects.length) count.textContent = "No subject is enrolled yet.";
    else if (shown.length === subjects.length) count.textContent = plural(subjects.length, "subject");
    else count.textContent = `${shown.length} of ${plural(subjects.length, "subject")} shown`;
  }
  filter.input.addEventListener("input", draw);
  try {
    subjects = await api("/v1/subjects");
    if (!ctx.alive()) return;
    draw();
  } catch (err) {
    if (!ctx.alive()) return;
    count.textContent = "";
    say(errors, errorText(err));
  }
}

function newSubjectForm(ctx) {
  const name = field("Name", { name: "name", required: true, maxlength: "200", autocomplete: "off" });
  const basis = field("Legal basis", { name: "legal_basis", required: true, autocomplete: "off" },
    "Why this person's face may be processed.");
  const lists = h("fieldset", { class: "lists" }, h("legend", { text: "Watch lists" }),
    h("p", { class: "hint", text: "Loading the watch lists…" }));
  const errors = alertBox();
  const button = h("button", { type: "submit", text: "Create subject" });
  const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "new-subject-h" },
    h("h2", { id: "new-subject-h", text: "New subject" }), name.field, basis.field, lists, errors,
    h("div", { class: "actions" }, button));

  api("/v1/watchlists").then((all) => {
    if (!ctx.alive()) return;
    lists.replaceChildren(h("legend", { text: "Watch lists" }));
    if (!all.length) lists.append(h("p", { class: "hint", text: "No watch list exists yet." }));
    for (const wl of all) {
      const id = newId("wl");
      const label = wl.two_person ? `${wl.name} (two-person review)` : wl.name;
      lists.append(h("div", { class: "check" },
        h("input", { type: "checkbox", id, name: "watchlists", value: wl.name }),
        h("label", { for: id, text: label })));
    }
  }, (err) => {
    if (!ctx.alive()) return;
    lists.replaceChildren(h("legend", { text: "Watch lists" }),
      h("p", { class: "error", role: "alert", text: errorText(err) }));
  });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say(errors, "");
    const n = name.input.value.trim();
    const b = basis.input.value.trim();
    const chosen = [...lists.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
    button.disabled = true;
    try {
      const made = await api("/v1/subjects", { method: "POST",
        json: { name: n, legal_basis: b, watchlists: chosen } });
      if (!ctx.alive()) return;
      go(subjectRoute(made.name || n), `Subject ${made.name || n} created (ledger entry #${made.ledger_seq}).`);
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
