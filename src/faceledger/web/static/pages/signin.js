// #/signin: exchange an API key for a session cookie.

import { signIn, errorText } from "../api.js";
import { h, heading, field, alertBox, say } from "../dom.js";
import { go, defaultRoute } from "../router.js";

export function render(view) {
  heading(view, "Sign in");
  const errors = alertBox();
  const key = field("API key", { type: "password", name: "api_key", autocomplete: "off",
    required: true, spellcheck: "false" });
  const button = h("button", { type: "submit", text: "Sign in" });
  const form = h("form", { class: "card narrow", novalidate: true },
    key.field,
    h("p", { class: "hint" },
      "Ask an administrator for a key (faceledger keys create --role ROLE --name YOU). ",
      "The key is kept in a session cookie for this browser tab's session, never in the page."),
    errors,
    h("div", { class: "actions" }, button));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = key.input.value.trim();
    if (!value) {
      say(errors, "Enter your API key.");
      key.input.focus();
      return;
    }
    button.disabled = true;
    say(errors, "");
    try {
      await signIn(value);
      key.input.value = "";
      go(defaultRoute(), "");
    } catch (err) {
      say(errors, err && err.status === 401 ? `Not signed in: ${err.message}` : errorText(err));
      key.input.select();
    } finally {
      button.disabled = false;
    }
  });
  view.append(form);
}
