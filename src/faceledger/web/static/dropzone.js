// A drop zone around a labelled file input: files dropped on it land in the input
// (and fire "change"), so keyboard and mouse users choose files the ordinary way.

import { h } from "./dom.js";

export function dropzone(label, attrs) {
  const id = attrs.id;
  const input = h("input", { type: "file", accept: "image/*", ...attrs });
  const chosen = h("p", { class: "chosen", "aria-live": "polite" });
  const zone = h("div", { class: "dropzone" },
    h("label", { for: id, text: label }), input, chosen);
  const stop = (e) => {
    e.preventDefault();
    e.stopPropagation();
  };
  zone.addEventListener("dragenter", (e) => { stop(e); zone.classList.add("dragover"); });
  zone.addEventListener("dragover", (e) => {
    stop(e);
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragover");
  });
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragover");
  });
  zone.addEventListener("drop", (e) => {
    stop(e);
    zone.classList.remove("dragover");
    const files = [...((e.dataTransfer && e.dataTransfer.files) || [])]
      .filter((f) => !f.type || f.type.startsWith("image/"));
    if (!files.length) return;
    const dt = new DataTransfer();
    for (const f of input.multiple ? files : files.slice(0, 1)) dt.items.add(f);
    input.files = dt.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  if (input.multiple) input.addEventListener("change", () => {
    const names = [...input.files].map((f) => f.name);
    chosen.textContent = names.length ? `Chosen: ${names.join(", ")}` : "";
  });
  return { zone, input };
}
