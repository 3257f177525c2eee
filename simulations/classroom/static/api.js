// api.js: talking to the classroom server. postJson() sends one action and turns every
// failure (an {"error": ...} reply, a server that is gone, a reply that is not JSON) into a
// message on the page; busy() keeps a control disabled only while its call runs, whatever
// happens; say() writes #messages, newest first.

import { $, h } from "./dom.js";

const MAX_MESSAGES = 80;

/** Put a message at the top of #messages ("info" or "error") and in the top bar's ticker. */
export function say(level, text) {
  const lvl = level === "error" ? "error" : "info";
  const list = $("#messages");
  const time = new Date().toLocaleTimeString([], { hour12: false });
  list.prepend(h("li", { class: `message ${lvl}`, dataset: { level: lvl } },
    h("span", { class: "msg-tag" }, lvl === "error" ? "✗ error" : "i info"),
    h("time", {}, time), h("span", { class: "msg-text" }, String(text))));
  while (list.childElementCount > MAX_MESSAGES) list.lastElementChild.remove();
  const ticker = $("#ticker");
  ticker.textContent = String(text);
  ticker.dataset.level = lvl;
  ticker.classList.remove("flash");
  void ticker.offsetWidth; // restart the flash
  ticker.classList.add("flash");
}

export class ApiError extends Error {}

/** GET a JSON document; an ApiError with one sentence when it fails. */
export async function getJson(path) {
  return call(path, { method: "GET" });
}

/** POST a JSON body; resolves to the reply, or throws ApiError with the server's sentence. */
export async function postJson(path, body) {
  return call(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function call(path, init) {
  let resp;
  try {
    resp = await fetch(path, { ...init, cache: "no-store" });
  } catch {
    throw new ApiError(`The classroom server did not answer ${path} (is it still running?).`);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const why = data && typeof data.error === "string" ? data.error : `HTTP ${resp.status}`;
    throw new ApiError(why);
  }
  if (data === null) throw new ApiError(`${path} sent a reply that is not JSON.`);
  return data;
}

/**
 * Run fn while these controls are disabled and marked busy; always give them back (a
 * control stays disabled only while some call of its own runs, or when it is locked), and
 * turn a failure into an error message. Returns fn's result, or undefined when it failed.
 */
export async function busy(controls, fn) {
  const els = (Array.isArray(controls) ? controls : [controls]).filter(Boolean);
  for (const el of els) {
    el.busyCount = (el.busyCount ?? 0) + 1;
    el.disabled = true;
    el.classList.add("busy");
    el.setAttribute("aria-busy", "true");
  }
  try {
    return await fn();
  } catch (err) {
    say("error", err instanceof ApiError ? err.message : `The page failed: ${err?.message ?? err}`);
    if (!(err instanceof ApiError)) console.warn(err);
    return undefined;
  } finally {
    for (const el of els) {
      el.busyCount -= 1;
      if (el.busyCount > 0) continue;
      // a control locked for a reason (attacks on a normal network) stays disabled
      el.disabled = Boolean(el.dataset.locked);
      el.classList.remove("busy");
      el.removeAttribute("aria-busy");
    }
  }
}
