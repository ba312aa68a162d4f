// #/events/ID: the evidence beside the enrolled templates, the facts, and the review.

import { api, can, getSession, errorText } from "../api.js";
import { h, heading, facts, status, alertBox, say, timeEl, num, rate, field, typingOrModified, qualityText, image } from "../dom.js";
import { go } from "../router.js";

export const settings = { thenNext: true };

export function reviewStateText(review, needed, reviews) {
  const confirmed = reviews.filter((r) => r.decision === "confirm").map((r) => r.reviewer);
  const rejected = reviews.filter((r) => r.decision === "reject").map((r) => r.reviewer);
  if (review === "confirmed") return `Confirmed by ${confirmed.join(", ")}.`;
  if (review === "rejected") return `Rejected by ${rejected.join(", ") || "a reviewer"}.`;
  if (review === "pending") {
    if (confirmed.length === 0) {
      return needed >= 2 ? `Needs ${needed} different reviewers to confirm; none so far.`
        : "Needs a reviewer to confirm or reject; none so far.";
    }
    const left = needed - confirmed.length;
    return `Confirmed by ${confirmed.join(", ")} (${confirmed.length} of ${needed}). ` +
      (left === 1 ? "A second, different reviewer must confirm." : `${left} more different reviewers must confirm.`);
  }
  return "Not under review.";
}

function reviewList(reviews) {
  if (!reviews.length) return h("p", { class: "hint", text: "No reviews yet." });
  return h("ul", { class: "reviews" }, reviews.map((r) => h("li", null,
    h("strong", { text: `${r.reviewer}: ${r.decision === "confirm" ? "confirmed" : "rejected"}` }),
    " ", timeEl(r.at),
    r.comment ? h("span", { class: "comment", text: ` — “${r.comment}”` }) : null)));
}

export async function nextPending(exceptId) {
  const pending = await api("/v1/events?review=pending&limit=200");
  return pending.find((e) => e.id !== exceptId) || null;
}

async function goNext(id, before = "") {
  const next = await nextPending(id);
  if (next) go(`#/events/${next.id}`, before);
  else go("#/review", `${before ? `${before} ` : ""}Nothing else waits for review.`);
}

function evidence(ev, view, ctx) {
  const wrap = h("section", { class: "evidence", "aria-labelledby": "evidence-h" },
    h("h2", { id: "evidence-h", text: "Evidence" }));
  const grid = h("div", { class: "side-by-side" });
  const crop = ev.has_crop
    ? h("figure", { class: "crop" }, image({ src: `/v1/events/${ev.id}/crop`, alt: `Evidence crop of event ${ev.id}` }),
      h("figcaption", { text: "Seen by the camera" }))
    : h("p", { class: "hint", text: "No evidence crop is kept for this event." });
  const enrolled = h("div", { class: "enrolled" });
  grid.append(crop, enrolled);
  wrap.append(grid);
  if (ev.has_crop || ev.subject) wrap.append(h("p", { class: "small", text: "Viewing these images is recorded in the audit ledger." }));
  view.append(wrap);
  if (!ev.subject) {
    enrolled.append(h("p", { class: "hint", text: "No enrolled person was named, so there are no templates to compare." }));
    return;
  }
  enrolled.append(h("p", { class: "hint", text: `Loading the enrolled templates of ${ev.subject}…` }));
  api(`/v1/events/${ev.id}/templates`).then((templates) => {
    if (!ctx.alive()) return;
    enrolled.replaceChildren(h("h3", { text: `Enrolled templates of ${ev.subject}` }));
    if (!templates.length) enrolled.append(h("p", { class: "hint", text: "No templates are enrolled." }));
    const ul = h("ul", { class: "thumbs" }, templates.slice(0, 5).map((t) => h("li", null, h("figure", null,
      image({ src: `/v1/events/${ev.id}/templates/${t.id}/crop`, alt: `Enrolled template ${t.id} of ${ev.subject}` }),
      h("figcaption", { text: `${t.source_name || "template"} · ${qualityText(t)}` })))));
    enrolled.append(ul);
  }, (err) => {
    if (!ctx.alive()) return;
    enrolled.replaceChildren(h("p", { role: "alert", class: "error", text: errorText(err) }));
  });
}

export async function render(view, [idText], ctx) {
  const id = Number(idText);
  // The heading appears with the event, so that what it promises (the form and its
  // keyboard shortcuts) is there as soon as it is.
  document.title = `Event ${id} — faceledger`;
  const loading = h("p", { class: "hint", text: `Loading event ${id}…` });
  view.append(loading);
  const errors = alertBox();
  let ev;
  try {
    ev = await api(`/v1/events/${id}`);
  } catch (err) {
    if (!ctx.alive()) return;
    loading.remove();
    heading(view, `Event ${id}`);
    view.append(errors);
    say(errors, errorText(err));
    return;
  }
  if (!ctx.alive()) return;
  loading.remove();
  heading(view, `Event ${id}`);
  view.append(errors);
  evidence(ev, view, ctx);
  const seen = ev.started_at || ev.created_at;
  view.append(h("section", { "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h", text: "Facts" }), facts([
    ["Subject", ev.subject || "unknown (no one named)"],
    ["Decision", ev.decision.replace(/_/g, " ")],
    ["Score", num(ev.score)],
    ["Threshold", num(ev.threshold)],
    ["False-match rate at this threshold", rate(ev.threshold_fmr)],
    ["Camera", ev.camera || "—"],
    ["Source", ev.source],
    ["Seen", timeEl(seen, true)],
    ["Track time", `${num(ev.first_t, 2)}–${num(ev.last_t, 2)} s`],
    ["Model", ev.model],
    ["Purpose", ev.recorded ? (ev.recorded.purpose || "none stated") : "not recorded with this event"],
    ["Case", (ev.recorded && ev.recorded.case_ref) || "—"],
    ["Decided by", ev.recorded
      ? `${ev.recorded.actor} (${ev.recorded.role}), ${ev.recorded.action}: ledger entry #${ev.recorded.ledger_seq}`
      : "—"],
  ])));

  const state = h("p", { "data-testid": "review-state", role: "status", class: "state" });
  const list = h("div", { class: "review-list" });
  const done = status();
  const reviewErrors = alertBox();
  const section = h("section", { class: "review", "aria-labelledby": "review-h" },
    h("h2", { id: "review-h", text: "Review" }), state, list, done, reviewErrors);
  view.append(section);
  const me = getSession() ? getSession().name : null;

  function show(review, needed, reviews) {
    state.textContent = reviewStateText(review, needed, reviews);
    list.replaceChildren(reviewList(reviews));
  }
  show(ev.review, ev.reviews_needed, ev.reviews || []);
  if (!can("events.review") || (ev.review !== "pending" && ev.review != null)) return;

  const comment = field("Comment (optional)", { tag: "textarea", rows: "3", maxlength: "2000" });
  const confirmB = h("button", { type: "button", class: "good", text: "Confirm", "aria-keyshortcuts": "c" });
  const rejectB = h("button", { type: "button", class: "bad", text: "Reject", "aria-keyshortcuts": "x" });
  const nextB = h("button", { type: "button", class: "quiet", text: "Next pending event", "aria-keyshortcuts": "n" });
  const note = h("p", { class: "hint", id: "confirm-note" });
  const then = h("input", { type: "checkbox", id: "then-next", checked: settings.thenNext });
  then.checked = settings.thenNext;
  then.addEventListener("change", () => { settings.thenNext = then.checked; });
  const form = h("form", { class: "card", "aria-label": "Decide" }, comment.field,
    h("div", { class: "actions" }, confirmB, rejectB, nextB), note,
    h("div", { class: "check" }, then, h("label", { for: "then-next", text: "Go to the next pending event after a decision" })),
    h("p", { class: "hint", text: "Keys: c confirm, x reject, n next pending event." }));
  form.addEventListener("submit", (e) => e.preventDefault());
  section.append(form);

  function mine(reviews) {
    return reviews.some((r) => r.decision === "confirm" && r.reviewer === me);
  }
  function lock(reviews, review) {
    const already = mine(reviews);
    confirmB.disabled = already;
    if (already) confirmB.setAttribute("aria-describedby", "confirm-note");
    note.textContent = already ? "You confirmed this; a different reviewer is needed." : "";
    note.hidden = !already;
    if (review !== "pending" && review != null) {
      confirmB.disabled = true;
      rejectB.disabled = true;
    }
  }
  lock(ev.reviews || [], ev.review);

  let busy = false;
  async function decide(decision) {
    if (busy) return;
    busy = true;
    say(reviewErrors, "");
    const text = comment.input.value.trim();
    try {
      const answer = await api(`/v1/events/${id}/review`, { method: "POST",
        json: { decision, comment: text || null } });
      if (!ctx.alive()) return;
      show(answer.review, answer.needed, answer.reviews);
      const recorded = `Recorded as ledger entry #${answer.ledger_seq}.`;
      done.textContent = recorded;
      comment.input.value = "";
      lock(answer.reviews, answer.review);
      if (settings.thenNext) {
        // the outcome goes along to the next page, where it is announced
        const outcome = `Event ${id}: your ${decision} is ${recorded.toLowerCase()} It is now ` +
          `${answer.review} (${answer.confirmations} of ${answer.needed} confirmations).`;
        done.textContent = `${recorded} Opening the next pending event…`;
        await goNext(id, outcome);
      }
    } catch (err) {
      if (ctx.alive()) say(reviewErrors, errorText(err));
    } finally {
      busy = false;
    }
  }
  async function next() {
    try {
      await goNext(id);
    } catch (err) {
      if (ctx.alive()) say(reviewErrors, errorText(err));
    }
  }
  confirmB.addEventListener("click", () => decide("confirm"));
  rejectB.addEventListener("click", () => decide("reject"));
  nextB.addEventListener("click", next);

  function onKey(e) {
    if (typingOrModified(e)) return;
    if (e.target instanceof Element && e.target.closest("dialog")) return;
    if (e.key === "c" && !confirmB.disabled) { e.preventDefault(); decide("confirm"); }
    else if (e.key === "x" && !rejectB.disabled) { e.preventDefault(); decide("reject"); }
    else if (e.key === "n") { e.preventDefault(); next(); }
  }
  document.addEventListener("keydown", onKey);
  ctx.onLeave(() => document.removeEventListener("keydown", onKey));
}
