// keys.js: a keyboard shortcut for every control (listed in the "?" overlay). Keys act only
// when no text field or list has the focus, so typing a name never pauses the diagram.

import { $ } from "./dom.js";

function typing(target) {
  const tag = target?.tagName;
  return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || target?.isContentEditable;
}

/** Scroll a part of the side panel to the top and focus its first control. */
function focusPart(partSelector, first) {
  const part = $(partSelector);
  part.scrollIntoView({ block: "start" });
  const el = first ? part.querySelector(first) : part;
  el?.focus({ preventScroll: true });
}

/** Install the shortcuts; actions: {pause, step, back, replay, pace(p), view(v), cycle, lesson}. */
export function installKeys(actions) {
  const help = $("#help");
  const openHelp = (open) => {
    help.hidden = !open;
    if (open) $("#help-close").focus();
  };
  $("#help-button").addEventListener("click", () => openHelp(true));
  $("#help-close").addEventListener("click", () => openHelp(false));
  help.addEventListener("click", (e) => {
    if (e.target === help) openHelp(false);
  });

  const table = {
    " ": actions.pause,
    ArrowRight: actions.step,
    ArrowLeft: actions.back,
    r: actions.replay,
    s: () => actions.pace("slow"),
    n: () => actions.pace("normal"),
    f: () => actions.pace("fast"),
    1: () => actions.view("requester"),
    2: () => actions.view("gateway"),
    3: () => actions.view("recipient"),
    4: () => actions.view("wire"),
    v: actions.cycle,
    q: () => focusPart("#send-panel", "#query-form select[name=from]"),
    b: () => focusPart("#face-form", "select[name=from]"),
    d: () => focusPart("#diffuse-form", "select[name=from]"),
    o: () => focusPart("#notice-form", "select[name=from]"),
    a: () => focusPart("#attack-panel", "[data-attack]:not(:disabled), #attack-from"),
    k: () => focusPart("#fault-panel", "#fault-bureau"),
    h: () => $("#heal-all").click(),
    l: () => {
      $("#lesson").scrollIntoView({ block: "start" });
      actions.lesson();
    },
    m: () => focusPart("#messages-panel"),
    g: () => {
      const input = $("#picker-codes");
      if (!input.closest("[hidden]")) input.focus();
    },
    "?": () => openHelp(help.hidden),
  };

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (!help.hidden) {
      if (e.key === "Escape" || e.key === "?") {
        e.preventDefault();
        openHelp(false);
      }
      return;
    }
    if (typing(e.target)) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const action = table[e.key];
    if (!action || (e.shiftKey && e.key !== "?")) return;
    e.preventDefault();
    action();
  });
}
