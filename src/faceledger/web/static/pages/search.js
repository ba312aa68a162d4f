// #/search: identify the faces in one photo, for a stated purpose (recorded).

import { api, can, getSession, errorText } from "../api.js";
import { h, heading, field, status, alertBox, say, num, plural } from "../dom.js";
import { dropzone } from "../dropzone.js";

const WORD = { match: "match", unknown: "unknown", insufficient_quality: "too poor" };

function oneIn(rate) {
  return typeof rate === "number" && rate > 0 ? Math.round(1 / rate).toLocaleString("en-US") : null;
}

export function faceText(face, n) {
  if (face.decision === "match") {
    const odds = oneIn(face.threshold_fpir ?? face.threshold_fmr);
    const tail = odds ? `; strangers named in 1 of ${odds} searches` : "";
    return `Face ${n}: ${face.subject} — score ${num(face.score)} (threshold ${num(face.threshold)}${tail})`;
  }
  if (face.decision === "insufficient_quality") {
    const q = face.quality;
    const why = (q && q.reason) || (q ? `quality ${num(q.score, 2)} is below the floor ${num(q.floor, 2)}` : "the face is below the quality floor");
    return `Face ${n}: too poor to decide — ${why}`;
  }
  return `Face ${n}: unknown — no enrolled person scored above the threshold.`;
}

function faceItem(face, n) {
  const li = h("li", { "data-testid": "face-result", class: `face ${face.decision || "unknown"}` },
    h("span", { text: faceText(face, n) }));
  if (face.decision === "match") {
    const others = (face.candidates || []).filter((c) => c.subject !== face.subject &&
      typeof face.threshold === "number" && c.score >= face.threshold);
    if (others.length) {
      li.append(h("p", { class: "hint", text: "Others above the threshold:" }),
        h("ul", { class: "candidates" }, others.map((c) => h("li", { text: `${c.subject} — score ${num(c.score)}` }))));
    }
  }
  return li;
}

function overlay(frame, img, faces) {
  const boxes = h("div", { class: "boxes", "aria-hidden": "true" });
  frame.append(boxes);
  const place = () => {
    const W = img.naturalWidth;
    const H = img.naturalHeight;
    if (!W || !H) return;
    boxes.replaceChildren();
    faces.forEach((face, i) => {
      const [x1, y1, x2, y2] = face.box;
      const box = h("div", { class: `box ${face.decision || "unknown"}` },
        h("span", { class: "tag", text: `${i + 1} ${WORD[face.decision] || "face"}` }));
      box.style.left = `${(Math.max(0, x1) / W) * 100}%`;
      box.style.top = `${(Math.max(0, y1) / H) * 100}%`;
      box.style.width = `${((Math.min(W, x2) - Math.max(0, x1)) / W) * 100}%`;
      box.style.height = `${((Math.min(H, y2) - Math.max(0, y1)) / H) * 100}%`;
      if (y1 / H < 0.08) box.classList.add("tag-inside");
      boxes.append(box);
    });
  };
  if (img.complete && img.naturalWidth) place();
  else img.addEventListener("load", place, { once: true });
}

export function render(view, _params, ctx) {
  heading(view, "Search a photo");
  const errors = alertBox();
  view.append(errors);
  if (!can("search")) {
    const s = getSession();
    say(errors, `Your key (role ${s.role}) may not do this: role ${s.role} may not use search (key ${s.key_id})`);
  }
  const photo = dropzone("Photo (drop it here or choose a file)", { id: "photo", name: "image", required: true });
  const purpose = field("Purpose (required)", { name: "purpose", required: true, minlength: "3", maxlength: "500",
    autocomplete: "off" }, "Why this search is made; it is recorded in the audit ledger.");
  const caseRef = field("Case reference (optional)", { name: "case_ref", maxlength: "200", autocomplete: "off" });
  const button = h("button", { type: "submit", text: "Search" });
  const form = h("form", { class: "card", novalidate: true }, photo.zone, purpose.field, caseRef.field,
    h("div", { class: "actions" }, button));
  const done = status();
  const results = h("section", { class: "results", "aria-labelledby": "results-h", hidden: true });
  view.append(form, done, results);

  let url = null;
  const release = () => { if (url) URL.revokeObjectURL(url); url = null; };
  ctx.onLeave(release);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say(errors, "");
    const file = photo.input.files[0];
    const why = purpose.input.value.trim();
    if (why.length < 3) {
      say(errors, "State why this search is made (at least 3 characters).");
      purpose.input.focus();
      return;
    }
    if (!file) {
      say(errors, "Choose a photo to search.");
      photo.input.focus();
      return;
    }
    const body = new FormData();
    body.append("image", file, file.name);
    body.append("purpose", why);
    if (caseRef.input.value.trim()) body.append("case_ref", caseRef.input.value.trim());
    button.disabled = true;
    done.textContent = "Searching…";
    try {
      const answer = await api("/v1/identify", { method: "POST", form: body });
      if (!ctx.alive()) return;
      show(file, answer, why);
    } catch (err) {
      if (!ctx.alive()) return;
      done.textContent = "";
      say(errors, errorText(err));
    } finally {
      button.disabled = false;
    }
  });

  function show(file, answer, why) {
    release();
    url = URL.createObjectURL(file);
    const faces = answer.faces || [];
    const img = h("img", { src: url, alt: `The searched photo, ${file.name}, with ${plural(faces.length, "face")} marked` });
    const frame = h("div", { class: "frame" }, img);
    overlay(frame, img, faces);
    const list = faces.length
      ? h("ol", { class: "faces" }, faces.map((f, i) => faceItem(f, i + 1)))
      : h("p", { class: "none", text: "No face found in this photo." });
    results.replaceChildren(h("h2", { id: "results-h", text: "Results" }), h("div", { class: "photo" }, frame), list);
    results.hidden = false;
    done.textContent = `Recorded as ledger entry #${answer.ledger_seq} (purpose: ${why}).`;
  }
}
