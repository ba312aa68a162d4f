// Hash routes: each page module exports render(view, params, ctx). The router clears the
// previous page (running its leave hooks), shows any flash message, and moves focus to
// the new page's <h1>.

import { getSession, can } from "./api.js";
import { h } from "./dom.js";

const routes = [];
let leaving = [];
let current = 0;
let flash = "";
let afterRender = () => {};

export const ORDER = [
  ["#/review", "events.read"],
  ["#/search", "search"],
  ["#/subjects", "subjects.read"],
  ["#/audit", "audit.read"],
  ["#/admin", "keys"],
  ["#/status", "health"],
];

export function defaultRoute() {
  const first = ORDER.find(([, perm]) => can(perm));
  return first ? first[0] : "#/status";
}

/** Register a route: pattern (RegExp on the hash) → page module. */
export function route(pattern, page, opts = {}) {
  routes.push({ pattern, page, public: Boolean(opts.public) });
}

export function onRender(fn) {
  afterRender = fn;
}

/** Go to a hash route, with an optional message to show there. */
export function go(hash, message) {
  if (message !== undefined) flash = message;
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function setFlash(message) {
  flash = message;
}

function match(hash) {
  for (const r of routes) {
    const m = hash.match(r.pattern);
    if (m) return { r, params: m.slice(1).map((p) => safeDecode(p)) };
  }
  return null;
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export async function render() {
  for (const fn of leaving.splice(0)) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
  const token = ++current;
  const hash = location.hash || "";
  if (hash === "" || hash === "#" || hash === "#/") {
    location.replace(getSession() ? defaultRoute() : "#/signin");
    return;
  }
  const found = match(hash);
  if (found && !found.r.public && !getSession()) {
    location.replace("#/signin");
    return;
  }
  const main = document.getElementById("main");
  const note = document.getElementById("flash");
  note.textContent = flash;
  note.hidden = !flash;
  flash = "";
  const view = h("div", { class: "view" });
  main.querySelector(".view")?.remove();
  main.append(view);
  const ctx = {
    onLeave: (fn) => leaving.push(fn),
    alive: () => token === current,
  };
  afterRender(hash);
  let done;
  if (found) done = found.r.page.render(view, found.params, ctx);
  else done = notFound(view);
  const h1 = view.querySelector("h1");
  if (h1) h1.focus();
  else main.focus();
  window.scrollTo(0, 0);
  try {
    await done;
  } catch (e) {
    console.error(e);
  }
  // A page whose heading waits for its data: focus it once it is there, unless the
  // user has already moved on.
  const now = document.activeElement;
  if (token === current && (!now || now === document.body || now === main)) {
    view.querySelector("h1")?.focus();
  }
}

function notFound(view) {
  document.title = "Page not found — faceledger";
  view.append(
    h("h1", { tabindex: "-1", text: "Page not found" }),
    h("p", null, "No console page lives at this address. ", h("a", { href: "#/", text: "Go to the start page" }), "."),
  );
}

export function start() {
  window.addEventListener("hashchange", () => render());
  render();
}
