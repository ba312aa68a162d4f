// #/admin: API keys (create, shown once; revoke), watch lists and their review rule, and a
// retention run. Everything here is the admin role's (keys, watchlists.*, retention).

import { api, errorText, getSession } from "../api.js";
import { h, heading, field, table, row, status, alertBox, say, timeEl, newId, plural } from "../dom.js";

const ROLES = ["admin", "enroller", "operator", "reviewer", "auditor"];

function check(label, name) {
  const id = newId("c");
  const input = h("input", { type: "checkbox", id, name });
  return { field: h("div", { class: "check" }, input, h("label", { for: id, text: label })), input };
}

function section(id, title, ...children) {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id, text: title }), children);
}

export async function render(view, _params, ctx) {
  heading(view, "Administration");
  view.append(keys(ctx), watchlists(ctx), retention(ctx));
}

function keys(ctx) {
  const errors = alertBox();
  const count = status("Loading the keys…");
  const made = h("div", { role: "status", class: "made" });
  const { wrap, body } = table("Every API key", ["Id", "Name", "Role", "Created", "By", "State", "Action"], []);
  const name = field("Holder's name", { name: "name", required: true, maxlength: "200", autocomplete: "off" },
    "The person or system that will hold the key (recorded with everything it does).");
  const roleId = newId("role");
  const role = h("select", { id: roleId, name: "role" }, ROLES.map((r) => h("option", { value: r, text: r })));
  const create = h("button", { type: "submit", text: "Create key" });
  const form = h("form", { novalidate: true, "aria-label": "New API key" },
    h("div", { class: "row-fields" }, name.field,
      h("div", { class: "field" }, h("label", { for: roleId, text: "Role" }), role)),
    h("div", { class: "actions" }, create));

  async function load() {
    try {
      const all = await api("/v1/keys");
      if (!ctx.alive()) return;
      body.replaceChildren(...all.map((k) => row(
        h("code", { text: k.id }), k.name, k.role, timeEl(k.created_at), k.created_by,
        k.revoked_at ? ["revoked ", timeEl(k.revoked_at)] : "active",
        k.revoked_at ? "" : revoker(k),
      )));
      count.textContent = plural(all.filter((k) => !k.revoked_at).length, "active key");
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    }
  }

  function revoker(k) {
    const cell = h("span", { class: "inline-confirm" });
    const ask = h("button", { type: "button", class: "quiet", text: `Revoke ${k.id}`,
      "aria-label": `Revoke the key of ${k.name} (${k.role})` });
    cell.append(ask);
    ask.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "bad", text: "Revoke now" });
      const no = h("button", { type: "button", class: "quiet", text: "Keep" });
      const own = (getSession() || {}).key_id === k.id;
      const question = own ? "This is your own key: revoking it signs you out here. Revoke it? "
        : `Revoke ${k.name}'s key? Their sessions end at once. `;
      cell.replaceChildren(h("span", { text: question }), yes, " ", no);
      no.addEventListener("click", () => { cell.replaceChildren(ask); ask.focus(); });
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try {
          await api(`/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
          if (!ctx.alive()) return;
          made.textContent = `The key of ${k.name} (${k.id}) is revoked.`;
          await load();
        } catch (err) {
          if (ctx.alive()) say(errors, errorText(err));
        }
      });
      yes.focus();
    });
    return cell;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say(errors, "");
    const who = name.input.value.trim();
    if (!who) {
      say(errors, "Name the person or system that will hold the key.");
      return;
    }
    create.disabled = true;
    try {
      const answer = await api("/v1/keys", { method: "POST", json: { name: who, role: role.value } });
      if (!ctx.alive()) return;
      made.replaceChildren(
        h("p", { text: `Key for ${answer.key.name} (${answer.key.role}) created. Hand it over safely: ` +
          "it is shown only now (only its hash is stored)." }),
        h("p", null, h("code", { class: "token", "data-testid": "new-token", text: answer.token })));
      name.input.value = "";
      await load();
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    } finally {
      create.disabled = false;
    }
  });
  load();
  return section("keys-h", "API keys", errors, made, count, wrap, h("h3", { text: "New key" }), form);
}

function ruleText(wl) {
  if (wl.two_person) return "two different reviewers confirm";
  return wl.review ? "a reviewer confirms" : "no review";
}

function watchlists(ctx) {
  const errors = alertBox();
  const done = status();
  const { wrap, body } = table("Every watch list", ["Name", "Review", "Subjects", "Created"], []);
  const name = field("Name", { name: "name", required: true, maxlength: "200", autocomplete: "off" });
  const review = check("Matches wait for a reviewer", "review");
  const two = check("Two different reviewers must confirm (two-person rule)", "two_person");
  const create = h("button", { type: "submit", text: "Create watch list" });
  const form = h("form", { novalidate: true, "aria-label": "New watch list" },
    name.field, review.field, two.field, h("div", { class: "actions" }, create));
  two.input.addEventListener("change", () => { if (two.input.checked) review.input.checked = true; });

  async function load() {
    try {
      const all = await api("/v1/watchlists");
      if (!ctx.alive()) return;
      body.replaceChildren(...all.map((wl) => row(wl.name, ruleText(wl),
        wl.subjects.length ? wl.subjects.join(", ") : "—", timeEl(wl.created_at))));
      if (!all.length) body.append(row("No watch list yet.", "", "", ""));
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    }
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say(errors, "");
    create.disabled = true;
    try {
      const wl = await api("/v1/watchlists", { method: "POST", json: {
        name: name.input.value.trim(), review: review.input.checked, two_person: two.input.checked } });
      if (!ctx.alive()) return;
      done.textContent = `Watch list ${wl.name} created: ${ruleText(wl)}.`;
      name.input.value = "";
      review.input.checked = false;
      two.input.checked = false;
      await load();
    } catch (err) {
      if (ctx.alive()) say(errors, errorText(err));
    } finally {
      create.disabled = false;
    }
  });
  load();
  return section("lists-h", "Watch lists", errors, done, wrap, h("h3", { text: "New watch list" }), form);
}

function days(value, none) {
  return value == null ? none : plural(value, "day");
}

function retention(ctx) {
  const errors = alertBox();
  const settings = h("p", { class: "hint", text: "Loading the settings…" });
  const done = status();
  const run = h("button", { type: "button", class: "bad", text: "Run retention now…" });
  const host = h("div", { class: "actions" }, run);
  api("/v1/status").then((s) => {
    if (!ctx.alive()) return;
    const r = s.retention;
    settings.textContent = `Events are kept ${days(r.keep_events_days, "for ever")}, known subjects' ` +
      `evidence crops ${days(r.keep_evidence_days, "for ever")}, strangers' crops ` +
      `${days(r.keep_unknown_days, "never (not stored)")}. The audit ledger is never deleted.`;
  }, (err) => { if (ctx.alive()) settings.textContent = errorText(err); });
  run.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: "bad", text: "Delete what outlived them" });
    const no = h("button", { type: "button", class: "quiet", text: "Cancel" });
    host.replaceChildren(h("p", { text: "This deletes the events and crops older than these settings now; " +
      "the run is recorded in the ledger." }), yes, " ", no);
    no.addEventListener("click", () => { host.replaceChildren(run); run.focus(); });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        const r = await api("/v1/retention/run", { method: "POST" });
        if (!ctx.alive()) return;
        done.textContent = `Retention run: ${plural(r.events_deleted, "event")} deleted, ` +
          `${plural(r.evidence_erased, "evidence crop")} and ${plural(r.unknown_erased, "stranger's crop", "strangers' crops")} ` +
          `erased (ledger entry #${r.ledger_seq}).`;
        host.replaceChildren(run);
      } catch (err) {
        if (ctx.alive()) say(errors, errorText(err));
      }
    });
    yes.focus();
  });
  return section("retention-h", "Retention", errors, settings, done, host);
}
