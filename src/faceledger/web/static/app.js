// Entry: reads the session, draws the header (nav by permission), starts the router.

import { loadSession, getSession, can, signOut, errorText, whenUnauthorized } from "./api.js";
import { h, heading, alertBox, say } from "./dom.js";
import { route, start, go, onRender, render } from "./router.js";
import * as signin from "./pages/signin.js";
import * as review from "./pages/review.js";
import * as event from "./pages/event.js";
import * as search from "./pages/search.js";
import * as subjects from "./pages/subjects.js";
import * as subject from "./pages/subject.js";
import * as audit from "./pages/audit.js";
import * as statusPage from "./pages/status.js";
import * as admin from "./pages/admin.js";

const LINKS = [
  ["#/review", "Review queue", "events.read", /^#\/(review|events\/)/],
  ["#/search", "Search", "search", /^#\/search/],
  ["#/subjects", "Subjects", "subjects.read", /^#\/subjects/],
  ["#/audit", "Audit", "audit.read", /^#\/audit/],
  ["#/admin", "Administration", "keys", /^#\/admin/],
  ["#/status", "Status", "health", /^#\/status/],
];

route(/^#\/signin$/, signin, { public: true });
route(/^#\/review$/, review);
route(/^#\/events\/(\d+)$/, event);
route(/^#\/search$/, search);
route(/^#\/subjects$/, subjects);
route(/^#\/subjects\/(.+)$/, subject);
route(/^#\/audit$/, audit);
route(/^#\/status$/, statusPage);
route(/^#\/admin$/, admin);

export function drawHeader(hash = location.hash) {
  const s = getSession();
  const ul = document.getElementById("nav-links");
  ul.replaceChildren();
  if (s) {
    for (const [href, text, perm, active] of LINKS) {
      if (perm !== "health" && !can(perm)) continue;
      const a = h("a", { href, text, "aria-current": active.test(hash) ? "page" : null });
      ul.append(h("li", null, a));
    }
  }
  const who = document.getElementById("who");
  who.hidden = !s;
  document.getElementById("who-text").textContent = s ? `Signed in as ${s.name} (${s.role})` : "";
}

document.getElementById("skip").addEventListener("click", (e) => {
  e.preventDefault();
  const h1 = document.querySelector("#main h1");
  (h1 || document.getElementById("main")).focus();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  let message = "Signed out.";
  try {
    await signOut();
  } catch (e) {
    if (!(e && e.status === 401)) message = `Signed out here; the server said: ${errorText(e)}`;
  }
  drawHeader("#/signin");
  go("#/signin", message);
});

whenUnauthorized(() => {
  drawHeader("#/signin");
  go("#/signin", "Your session ended; sign in again.");
});

onRender((hash) => drawHeader(hash));

async function boot() {
  try {
    await loadSession();
  } catch (e) {
    const view = document.querySelector("#main .view");
    view.replaceChildren();
    heading(view, "The console cannot start");
    const box = alertBox();
    view.append(box, h("p", null, h("button", { type: "button", text: "Try again", onclick: () => location.reload() })));
    say(box, errorText(e));
    view.querySelector("h1").focus();
    return;
  }
  start();
}

boot();
export { render };
