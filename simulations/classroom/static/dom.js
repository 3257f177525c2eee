// dom.js: tiny helpers to build DOM and SVG nodes. Text always goes in as text, never as HTML,
// so a value with markup in it shows as it is.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Build an HTML element: h("td", {class: "k", dataset: {x: 1}}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** Build an SVG element the same way. */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "style") throw new Error("classroom page: no inline style (the server's CSP)");
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** The element of a selector, or an error naming it (a missing id is a bug in the page). */
export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`classroom page: no element ${selector}`);
  return el;
}

export function $$(selector, root = document) {
  return [...root.querySelectorAll(selector)];
}

/** Replace a select's options, keeping the chosen value when it is still offered. */
export function setOptions(select, values, { labels = {}, extra = [] } = {}) {
  const keep = select.value;
  select.replaceChildren(
    ...[...values, ...extra].map((v) => h("option", { value: v }, labels[v] ?? v)),
  );
  if ([...values, ...extra].includes(keep)) select.value = keep;
}

/** A short id for a 32-hex id: the first 8 digits and an ellipsis. */
export function shortId(hex) {
  return hex && hex.length > 10 ? `${hex.slice(0, 8)}…` : hex ?? "";
}
