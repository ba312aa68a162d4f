// Small DOM helpers: elements are built with createElement/textContent only (CSP-safe,
// and untrusted text such as names and comments is never parsed as HTML).

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  add(el, children);
  return el;
}

export function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let uid = 0;
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** The page's one <h1> (focusable, so the router can move focus to it) and its title. */
export function heading(view, text) {
  const h1 = h("h1", { tabindex: "-1", text });
  document.title = `${text} — faceledger`;
  view.append(h1);
  return h1;
}

/** A labelled input: returns {field (the wrapper), input}. */
export function field(label, attrs = {}, hint) {
  const id = attrs.id || newId("f");
  const hintId = hint ? `${id}-hint` : null;
  const tag = attrs.tag || "input";
  const input = h(tag, { ...attrs, tag: null, id, "aria-describedby": hintId });
  const wrap = h("div", { class: "field" }, h("label", { for: id, text: label }), input);
  if (hint) wrap.append(h("p", { class: "hint", id: hintId, text: hint }));
  return { field: wrap, input };
}

/** A horizontally scrollable, keyboard-reachable table wrapper. */
export function table(label, headers, rows) {
  const head = h("tr", null, headers.map((t) => h("th", { scope: "col", text: t })));
  const body = h("tbody", null, rows);
  const tbl = h("table", null, h("thead", null, head), body);
  const wrap = h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label }, tbl);
  return { wrap, body };
}

export function row(...cells) {
  return h("tr", null, cells.map((c) => h("td", null, c)));
}

/** A <dl> from [term, value] pairs (value: text or nodes). */
export function facts(pairs, cls = "facts") {
  const dl = h("dl", { class: cls });
  for (const [term, value] of pairs) dl.append(h("dt", { text: term }), h("dd", null, value));
  return dl;
}

export function status(text = "") {
  return h("p", { role: "status", class: "status", text });
}

export function alertBox() {
  return h("div", { role: "alert", class: "alert-host", hidden: true });
}

/** Show text in an alert host (empty text clears and hides it). */
export function say(host, text) {
  host.replaceChildren();
  host.hidden = !text;
  if (text) host.append(h("p", { class: "error", text }));
}

export function localTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** <time datetime=ISO>local time</time> followed by the ISO text. */
export function timeEl(iso, withIso = false) {
  if (!iso) return "—";
  const t = h("time", { datetime: iso, title: iso, text: localTime(iso) });
  return withIso ? [t, h("span", { class: "iso", text: ` (${iso})` })] : t;
}

export function num(x, digits = 3) {
  return typeof x === "number" ? x.toFixed(digits) : "—";
}

/** 0.001 → "1 in 1,000 (1e-3)" (word: "in", or "of" for searches). */
export function rate(fmr, word = "in") {
  if (typeof fmr !== "number" || !(fmr > 0)) return "—";
  const one = Math.round(1 / fmr).toLocaleString("en-US");
  return `1 ${word} ${one} (${Number(fmr.toPrecision(2)).toExponential().replace("e+", "e")})`;
}

export function basename(path) {
  return String(path || "").split(/[\\/]/).pop() || String(path || "");
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** True while the user types (shortcuts must not fire) or holds Ctrl/Alt/Meta. */
export function typingOrModified(e) {
  if (e.ctrlKey || e.altKey || e.metaKey) return true;
  const t = e.target;
  if (!(t instanceof Element)) return false;
  return t.matches("input, textarea, select, [contenteditable], [contenteditable] *");
}

/** Pretty JSON (or text) of any value. */
export function show(value) {
  if (value == null) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A template's face quality score (0-1), or null when none was recorded (schema < v7).
 *  ``quality`` is the crop's sharpness, not a 0-1 score: used only when it is one. */
export function templateQuality(t) {
  if (typeof t.quality_score === "number") return t.quality_score;
  if (typeof t.quality === "number" && t.quality >= 0 && t.quality <= 1) return t.quality;
  return null;
}

export function qualityText(t) {
  const q = templateQuality(t);
  return q == null ? "quality not recorded" : `quality ${q.toFixed(2)}`;
}

/** An <img> shown only once it has loaded (no empty box while it comes; a note in words
 *  when it cannot be loaded). */
export function image(attrs) {
  const img = h("img", { ...attrs, hidden: true });
  img.addEventListener("load", () => { img.hidden = false; }, { once: true });
  img.addEventListener("error", () => {
    img.replaceWith(h("span", { class: "hint", text: `${attrs.alt}: the image could not be loaded.` }));
  }, { once: true });
  return img;
}
