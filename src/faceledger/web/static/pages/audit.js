// #/audit: the chain's verification first, then the ledger, newest first, filterable.

import { api, errorText } from "../api.js";
import { h, heading, field, table, status, alertBox, say, timeEl, plural } from "../dom.js";

function chainStatus(v) {
  if (v.ok) {
    return h("p", { "data-testid": "chain-status", class: "chain ok" },
      `Chain verified: ${plural(v.entries, "entry", "entries")}. Head hash: `, h("code", { text: v.head || "—" }));
  }
  return h("p", { "data-testid": "chain-status", class: "chain broken", role: "alert",
    text: `Chain BROKEN at entry ${v.first_bad}: ${v.reason}` });
}

function entryRow(e) {
  const result = JSON.stringify(e.result ?? null, null, 2);
  const more = h("details", null, h("summary", { text: `Entry ${e.seq}` }),
    h("p", { class: "small", text: "Result:" }), h("pre", { text: result }),
    e.inputs != null ? [h("p", { class: "small", text: "Inputs:" }), h("pre", { text: JSON.stringify(e.inputs, null, 2) })] : null,
    h("p", { class: "small" }, "Hash: ", h("code", { text: e.hash || "—" })),
    h("p", { class: "small" }, "Previous hash: ", h("code", { text: e.prev_hash || "—" })));
  return h("tr", null,
    h("td", { text: String(e.seq) }), h("td", { class: "nowrap" }, timeEl(e.at)), h("td", { class: "nowrap", text: e.actor || "—" }),
    h("td", { text: e.role || "—" }), h("td", { class: "nowrap", text: e.action || "—" }), h("td", { text: e.purpose || "" }),
    h("td", { text: e.case_ref || "" }), h("td", { class: "more" }, more));
}

const LIMIT = 1000;

export async function render(view, _params, ctx) {
  heading(view, "Audit ledger");
  const chain = h("div", { class: "chain-host" }, h("p", { class: "hint", text: "Verifying the chain…" }));
  const errors = alertBox();
  const actor = field("Actor", { name: "actor", autocomplete: "off" });
  const action = field("Action", { name: "action", autocomplete: "off" });
  const since = field("Since", { name: "since", type: "datetime-local" });
  const contains = field("Purpose or case contains", { name: "contains", autocomplete: "off" });
  const form = h("form", { class: "card filters", "aria-label": "Filter the ledger", novalidate: true },
    actor.field, action.field, since.field, contains.field,
    h("div", { class: "actions" }, h("button", { type: "submit", text: "Apply" })));
  const count = status();
  const { wrap, body } = table("Audit ledger entries",
    ["#", "Time", "Actor", "Role", "Action", "Purpose", "Case", "Details"], []);
  const exportLink = h("a", { href: "/v1/audit/export", download: true,
    text: "Export the whole ledger (JSON lines)" });
  view.append(chain, errors, form, count, wrap, h("p", { class: "export" }, exportLink));

  api("/v1/audit/verify").then((v) => {
    if (ctx.alive()) chain.replaceChildren(chainStatus(v));
  }, (err) => {
    if (!ctx.alive()) return;
    const text = err.status === 403 ? "Chain status not shown: this key may not read the audit ledger." : errorText(err);
    chain.replaceChildren(h("p", { "data-testid": "chain-status", role: err.status === 403 ? null : "alert", class: "error", text }));
  });

  let entries = [];
  function draw() {
    const q = contains.input.value.trim().toLowerCase();
    const shown = entries.filter((e) => !q || `${e.purpose || ""}\n${e.case_ref || ""}`.toLowerCase().includes(q));
    body.replaceChildren(...shown.map(entryRow));
    const more = entries.length >= LIMIT ? ` (the newest ${LIMIT.toLocaleString()}: narrow the filters to see older ones)` : "";
    count.textContent = `${plural(shown.length, "entry", "entries")} shown${more}`;
  }

  async function load() {
    const params = new URLSearchParams();
    if (actor.input.value.trim()) params.set("actor", actor.input.value.trim());
    if (action.input.value.trim()) params.set("action", action.input.value.trim());
    if (since.input.value) {
      const d = new Date(since.input.value);
      if (!Number.isNaN(d.getTime())) params.set("since", d.toISOString());
    }
    params.set("limit", String(LIMIT));
    params.set("order", "newest");
    say(errors, "");
    count.textContent = "Loading the ledger…";
    try {
      entries = await api(`/v1/audit?${params}`);
      if (!ctx.alive()) return;
      draw();
    } catch (err) {
      if (!ctx.alive()) return;
      count.textContent = "";
      say(errors, errorText(err));
    }
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  await load();
}
