// The enroll part of a subject's page: one request per photo, in sequence, each with
// its own answer, then the thumbnails are refreshed and qualities read back.

import { api, errorText } from "../api.js";
import { h, status, alertBox, say, templateQuality } from "../dom.js";
import { dropzone } from "../dropzone.js";

/** The reason of a 422, without the "nothing enrolled for 'NAME': file.jpg: " prefix. */
export function reason(message, file) {
  let text = String(message || "");
  if (text.startsWith("nothing enrolled for ")) {
    const at = text.indexOf(`${file}: `);
    if (at >= 0) text = text.slice(at + file.length + 2);
  } else if (text.startsWith(`${file}: `)) {
    text = text.slice(file.length + 2);
  }
  return text;
}

function failureText(f) {
  if (typeof f === "string") return f;
  if (f && typeof f === "object") return f.reason || f.error || f.message || JSON.stringify(f);
  return String(f);
}

function failureFile(f, fallback) {
  return (f && typeof f === "object" && (f.source || f.file || f.name)) || fallback;
}

/** opts: path (the subject's API path), name, refresh() → the new templates list. */
export function enrollSection(opts, ctx) {
  const picker = dropzone("Photos to enroll (drop them here or choose files)", { id: "enroll-photos", multiple: true, name: "images" });
  const progress = status();
  const errors = alertBox();
  const results = h("ul", { class: "enroll-results" });
  const section = h("section", { class: "card", "aria-labelledby": "enroll-h" },
    h("h2", { id: "enroll-h", text: "Enroll" }),
    h("p", { class: "hint", text: "Each photo must show one face, sharp and well lit. Photos are enrolled one at a time, as soon as they are chosen." }),
    picker.zone, progress, errors, results);

  let busy = false;
  picker.input.addEventListener("change", async () => {
    const files = [...picker.input.files];
    if (!files.length || busy) return;
    busy = true;
    picker.input.disabled = true;
    say(errors, "");
    results.replaceChildren();
    const enrolled = []; // {li, file}
    let rejected = 0;
    const reject = (file, why) => {
      rejected += 1;
      results.append(h("li", { "data-testid": "enroll-result", class: "rejected", text: `${file}: rejected — ${why}` }));
    };
    for (const [i, file] of files.entries()) {
      if (!ctx.alive()) return;
      progress.textContent = `Enrolling ${i + 1} of ${files.length}…`;
      const form = new FormData();
      form.append("images", file, file.name);
      try {
        const answer = await api(`${opts.path}/templates`, { method: "POST", form });
        for (const got of answer.enrolled || []) {
          const li = h("li", { "data-testid": "enroll-result", class: "enrolled", text: `${got}: enrolled` });
          results.append(li);
          enrolled.push({ li, file: got });
        }
        for (const f of answer.failures || []) reject(failureFile(f, file.name), reason(failureText(f), failureFile(f, file.name)));
      } catch (err) {
        if (!ctx.alive()) return;
        if (err.status === 422 || err.status === 409 || err.status === 413) {
          reject(file.name, reason(err.message, file.name));
        } else {
          reject(file.name, errorText(err));
          if ([0, 401, 403].includes(err.status)) {
            say(errors, errorText(err));
            break;
          }
        }
      }
    }
    let templates = [];
    try {
      templates = await opts.refresh();
    } catch {
      templates = [];
    }
    if (!ctx.alive()) return;
    for (const { li, file } of enrolled) {
      const same = templates.filter((t) => t.source_name === file)
        .sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)) || b.id - a.id);
      const q = same.length ? templateQuality(same[0]) : null;
      if (q != null) li.textContent = `${file}: enrolled (quality ${q.toFixed(2)})`;
    }
    progress.textContent = `${enrolled.length} enrolled, ${rejected} rejected.`;
    picker.input.value = "";
    picker.input.disabled = false;
    busy = false;
  });
  return section;
}
