// #/review: the pending events, newest first, kept live by the event stream.

import { api, errorText } from "../api.js";
import { h, heading, status, alertBox, say, timeEl, num, basename, typingOrModified } from "../dom.js";

const SHORTCUTS = [
  ["j or ↓", "Select the next event"],
  ["k or ↑", "Select the previous event"],
  ["Enter", "Open the selected event"],
  ["?", "Show or hide this list"],
];

function newest(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  return tb - ta || b.id - a.id;
}

export async function render(view, _params, ctx) {
  heading(view, "Review queue");
  const count = status("Loading the queue…");
  const live = h("p", { role: "status", class: "live", hidden: true });
  const errors = alertBox();
  const helpButton = h("button", { type: "button", class: "quiet", "aria-expanded": "false",
    "aria-controls": "shortcuts", text: "Keyboard shortcuts (?)" });
  const help = h("section", { id: "shortcuts", class: "card help", hidden: true, "aria-labelledby": "shortcuts-h" },
    h("h2", { id: "shortcuts-h", text: "Keyboard shortcuts" }),
    h("dl", { class: "keys" }, SHORTCUTS.map(([k, d]) => [h("dt", null, h("kbd", { text: k })), h("dd", { text: d })])));
  const list = h("ol", { id: "queue", class: "queue" });
  view.append(h("div", { class: "bar" }, count, helpButton), live, errors, help, list);

  const items = new Map(); // id → {event, li, link, details}
  let order = [];
  let selected = null;

  function toggleHelp() {
    help.hidden = !help.hidden;
    helpButton.setAttribute("aria-expanded", String(!help.hidden));
  }
  helpButton.addEventListener("click", toggleHelp);

  function fill(item) {
    const ev = item.event;
    item.link.textContent = `Event ${ev.id}: ${ev.subject || "unknown"}`;
    const parts = [
      h("span", { text: ev.camera ? `Camera ${ev.camera}` : basename(ev.source) }),
      timeEl(ev.started_at || ev.created_at),
      h("span", { text: `score ${num(ev.score)}` }),
    ];
    if (ev.reviews_needed === 2) parts.push(h("span", { class: "badge", text: "needs 2 reviewers" }));
    item.details.replaceChildren(...parts.flatMap((p, i) => (i ? [" · ", p] : [p])));
  }

  function put(ev) {
    let item = items.get(ev.id);
    if (!item) {
      const link = h("a", { href: `#/events/${ev.id}` });
      const details = h("p", { class: "details" });
      const li = h("li", { "data-event-id": ev.id }, link, details);
      li.addEventListener("click", (e) => {
        if (e.target !== link) select(ev.id, false);
      });
      item = { event: ev, li, link, details };
      items.set(ev.id, item);
    }
    item.event = ev;
    fill(item);
  }

  function drop(id) {
    const item = items.get(id);
    if (!item) return;
    const hadFocus = item.li.contains(document.activeElement);
    const at = order.indexOf(id);
    item.li.remove();
    items.delete(id);
    order = order.filter((x) => x !== id);
    if (selected === id) {
      selected = order[Math.min(at, order.length - 1)] ?? null;
      mark(hadFocus);
    }
  }

  function layout() {
    order = [...items.values()].map((i) => i.event).sort(newest).map((e) => e.id);
    order.forEach((id, i) => {
      const li = items.get(id).li;
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    const n = order.length;
    count.textContent = n ? `${n} pending` : "Nothing waits for review.";
  }

  function mark(focus) {
    for (const [id, item] of items) {
      if (id === selected) item.li.setAttribute("aria-current", "true");
      else item.li.removeAttribute("aria-current");
    }
    if (focus && selected != null) items.get(selected).link.focus();
  }

  function select(id, focus = true) {
    selected = id;
    mark(focus);
  }

  function move(step) {
    if (!order.length) return;
    const at = order.indexOf(selected);
    const next = at < 0 ? (step > 0 ? 0 : order.length - 1) : Math.max(0, Math.min(order.length - 1, at + step));
    select(order[next]);
  }

  function onKey(e) {
    if (typingOrModified(e)) return;
    if (e.key === "j" || e.key === "ArrowDown") {
      e.preventDefault();
      move(1);
    } else if (e.key === "k" || e.key === "ArrowUp") {
      e.preventDefault();
      move(-1);
    } else if (e.key === "?") {
      e.preventDefault();
      toggleHelp();
    } else if (e.key === "Enter" && selected != null) {
      const t = e.target;
      if (t instanceof Element && t.closest("a, button, summary, [role=button]")) return;
      e.preventDefault();
      location.hash = `#/events/${selected}`;
    }
  }
  document.addEventListener("keydown", onKey);
  ctx.onLeave(() => document.removeEventListener("keydown", onKey));

  // Live updates: the list is loaded once the feed has taken its starting point ("ready"),
  // so that nothing made or reviewed in between is missed.
  let source = null;
  let ready = () => {};
  const started = new Promise((resolve) => { ready = resolve; });
  if (typeof EventSource === "function") {
    source = new EventSource("/v1/events/stream");
    source.addEventListener("ready", () => ready());
    setTimeout(() => ready(), 3000); // a feed that does not start does not hold up the list
    source.addEventListener("open", () => {
      live.hidden = true;
      live.textContent = "";
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CONNECTING) {
        live.hidden = false;
        live.textContent = "Live updates paused; reconnecting…";
      } else if (source.readyState === EventSource.CLOSED) {
        live.hidden = false;
        live.textContent = "Live updates stopped; reload the page to try again.";
        // A refused stream most often means the session ended: asking says so (a 401
        // sends the console to the sign-in page).
        api("/v1/session").catch(() => {});
      }
    });
    source.addEventListener("event", (msg) => {
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (!ev || typeof ev.id !== "number") return;
      if (ev.review === "pending") put(ev);
      else drop(ev.id);
      layout();
    });
    ctx.onLeave(() => source.close());
  } else {
    ready();
  }

  await started;
  if (!ctx.alive()) return;
  try {
    const events = await api("/v1/events?review=pending&limit=200");
    if (!ctx.alive()) return;
    for (const ev of events) if (ev.review === "pending" || ev.review == null) put(ev);
    layout();
  } catch (err) {
    if (!ctx.alive()) return;
    count.textContent = "";
    say(errors, errorText(err));
  }
}
