// Small DOM helpers. Every text a page shows goes through textContent (never innerHTML), so
// nothing the API returns (a job's output, a key's name) can become markup.

/** h("button", {type: "button", onclick: f}, "Text", child) -> an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** The same for SVG elements (the chart). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A labelled form field: the label is a real <label for>, so every control has a name. */
let fieldCount = 0;
export function field(labelText, control, hint) {
  fieldCount += 1;
  const id = control.id || `f${fieldCount}`;
  control.id = id;
  const parts = [h("label", { for: id }, labelText)];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId }, hint));
  }
  parts.push(control);
  return h("div", { class: "field" }, ...parts);
}

/** A region that speaks its changes to screen readers: role=status, or role=alert for errors. */
export function messageBox() {
  const box = h("div", { class: "message", role: "status", "aria-live": "polite" });
  return {
    el: box,
    ok(text) {
      box.className = "message ok";
      box.setAttribute("role", "status");
      box.textContent = text;
    },
    error(text) {
      box.className = "message error";
      box.setAttribute("role", "alert");
      box.textContent = text;
    },
    clear() {
      box.className = "message";
      box.setAttribute("role", "status");
      box.textContent = "";
    },
  };
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" }) + " UTC";
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${Math.abs(n) === 1 ? one : many}`;
}

/** Task type ids in words ("generate_text" -> "Generate text"). */
export function words(id) {
  const text = String(id).replaceAll("_", " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function pageHeading(text) {
  // tabindex=-1: the router moves focus here on every page change, for keyboard and screen readers.
  return h("h1", { tabindex: "-1" }, text);
}
