// #/status: what runs (models), what is kept (gallery, retention), what waits (queues).

import { api, errorText } from "../api.js";
import { h, heading, facts, table, row, alertBox, say, timeEl, show } from "../dom.js";

function days(value, none) {
  return value == null ? none : `${value} ${value === 1 ? "day" : "days"}`;
}

function loaded(value) {
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? `yes (${value.join(", ")})` : "no";
  if (typeof value === "number") return value ? `yes (${value})` : "no";
  return show(value);
}

function section(title, content) {
  const id = `status-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id, text: title }), content);
}

export async function render(view, _params, ctx) {
  heading(view, "Status");
  const errors = alertBox();
  view.append(errors);
  let s;
  try {
    s = await api("/v1/status");
  } catch (err) {
    if (ctx.alive()) say(errors, errorText(err));
    return;
  }
  if (!ctx.alive()) return;
  const g = s.gallery || {};
  const q = s.queues || {};
  const r = s.retention || {};
  const cameras = s.cameras || [];
  view.append(h("p", { class: "hint", text: `faceledger ${s.version || ""}` }));
  const grid = h("div", { class: "status-grid" },
    section("Models", facts([
      ["Profile", show(s.profile)],
      ["Embedder", show(s.model)],
      ["Detector", show(s.detector)],
      ["Loaded", loaded(s.models_loaded)],
      ["Quality floor", show(s.quality_floor)],
      ["Strictness", show(s.strictness)],
    ])),
    section("Gallery", facts([
      ["Subjects", show(g.subjects)],
      ["Templates", show(g.templates)],
      ["Watch lists", show(g.watchlists)],
      ["Database", show(s.database)],
      ["Schema", show(s.schema_version)],
    ])),
    section("Queues", facts([
      ["Pending reviews", show(q.pending_reviews)],
      ["Outbox", show(q.outbox)],
    ])),
    section("Retention", facts([
      ["Events kept", days(r.keep_events_days, "until erased")],
      ["Evidence crops kept", days(r.keep_evidence_days, "until erased")],
      ["Unknown faces kept", days(r.keep_unknown_days, "never stored")],
    ])));
  const camBody = cameras.length
    ? table("Cameras", ["Camera", "Events", "Last event"],
      cameras.map((c) => row(c.camera, String(c.events), timeEl(c.last_event_at)))).wrap
    : h("p", { text: "No camera has reported an event yet." });
  view.append(grid, section("Cameras", [camBody,
    h("p", { class: "small", text: "Live camera health and snapshots arrive with camera records (the camera network)." })]));
}
