// views.js: the "View as" panel. One exchange (the latest, or one picked) drawn four times,
// as the requester, the gateway, the recipient and a wire observer see it, each in its own
// <section data-view=...>; only the chosen one shows. The gateway's section is filled from
// the gateway's view alone (header rows, hex, what it cannot see), never from another view.

import { $, $$, h, shortId } from "./dom.js";
import { BAD_OUTCOMES, GOOD_OUTCOMES, outcomeWord } from "./mapping.js";

export const VIEWS = ["requester", "gateway", "recipient", "wire"];
const TITLES = {
  requester: "What the requester sees",
  gateway: "What the gateway sees",
  recipient: "What the recipient sees",
  wire: "What the wire shows an outsider",
};
const MAX_EXCHANGES = 60;

export class ViewPanel {
  constructor(root, { onSelect } = {}) {
    this.root = root;
    this.onSelect = onSelect ?? (() => {});
    this.exchanges = []; // oldest first
    this.selected = null; // exchange id; null: follow the latest
    this.view = "requester";
    for (const b of $$("[data-show-view]", root)) {
      b.addEventListener("click", () => this.show(b.dataset.showView));
    }
    $("#exchange-list", root).addEventListener("click", (e) => {
      const b = e.target.closest("[data-exchange]");
      if (b) this.select(b.dataset.exchange);
    });
    this.show(this.view);
    this.render();
  }

  /** Show one party's view. */
  show(view) {
    if (!VIEWS.includes(view)) return;
    this.view = view;
    for (const sec of $$("section[data-view]", this.root)) sec.hidden = sec.dataset.view !== view;
    for (const b of $$("[data-show-view]", this.root)) {
      b.setAttribute("aria-pressed", String(b.dataset.showView === view));
    }
    this.root.dataset.current = view;
  }

  cycle() {
    this.show(VIEWS[(VIEWS.indexOf(this.view) + 1) % VIEWS.length]);
  }

  /** Add (or update) an exchange record; shows it unless the trainer picked another. */
  add(x) {
    if (!x?.id) return;
    const i = this.exchanges.findIndex((e) => e.id === x.id);
    if (i >= 0) this.exchanges[i] = x;
    else this.exchanges.push(x);
    if (this.exchanges.length > MAX_EXCHANGES) this.exchanges.shift();
    if (this.selected && !this.exchanges.some((e) => e.id === this.selected)) this.selected = null;
    this.render();
  }

  current() {
    const id = this.selected;
    return (id && this.exchanges.find((e) => e.id === id)) || this.exchanges.at(-1) || null;
  }

  select(id) {
    if (!this.exchanges.some((e) => e.id === id)) return false;
    this.selected = id === this.exchanges.at(-1)?.id ? null : id;
    this.render();
    return true;
  }

  /** Select the exchange one of whose envelopes has this message or correlation id. */
  selectByMessage(message, correlation) {
    const x = [...this.exchanges].reverse().find((e) =>
      e.message_id === message || (correlation && e.correlation_id === correlation));
    if (x) this.select(x.id);
    return x;
  }

  /** The exchange before the shown one (the player's "back"). */
  selectPrevious() {
    const cur = this.current();
    const i = this.exchanges.indexOf(cur);
    if (i > 0) {
      this.selected = this.exchanges[i - 1].id;
      this.render();
    }
  }

  render() {
    const x = this.current();
    this.onSelect(x);
    this.renderList(x);
    this.renderHead(x);
    for (const view of VIEWS) {
      const sec = $(`section[data-view="${view}"]`, this.root);
      const parts = x ? this.section(view, x.views?.[view] ?? {}) : empty(view);
      // The candidate list is the requester's: the gateway never sees it.
      if (x?.biometric && view === "requester") parts.splice(1, 0, biometricBlock(x.biometric));
      sec.replaceChildren(...parts);
    }
  }

  renderList(x) {
    const items = [...this.exchanges].reverse().slice(0, 12).map((e) =>
      h("li", {}, h("button", {
        type: "button", dataset: { exchange: e.id, outcome: e.outcome ?? "" },
        "aria-current": e === x ? "true" : null, class: e.caught ? "caught-chip" : null,
      }, outcomeShape(e.outcome), `${e.action === "attack" ? `${e.attack}: ` : ""}` +
        `${e.from}→${e.to} ${e.kind ?? ""} ${outcomeWord(e.outcome)}`)));
    $("#exchange-list", this.root).replaceChildren(...items);
  }

  renderHead(x) {
    const head = $("#exchange-head", this.root);
    const caught = $("#caught-slot", this.root);
    const pad = $("#padding", this.root);
    if (!x) {
      head.replaceChildren(h("p", { class: "muted" }, "No exchange yet: send a query (key q)."));
      caught.replaceChildren();
      pad.replaceChildren();
      return;
    }
    const recips = (x.recipients ?? []).map((r) =>
      h("span", { class: `chip outcome-${r.outcome}` }, outcomeShape(r.outcome),
        `${r.bureau} ${outcomeWord(r.outcome)}`));
    const parts = [
      h("p", { class: "exchange-title" },
        h("strong", {}, x.action === "attack" ? `Attack ${x.attack}` : "Query"),
        ` ${x.from} → ${x.to}`, x.kind ? ` · ${x.kind}` : "",
        h("span", { class: `chip outcome-${x.outcome}`, dataset: { outcome: x.outcome } },
          outcomeShape(x.outcome), outcomeWord(x.outcome)),
        h("span", { class: "muted" }, ` ${x.id} · msg ${shortId(x.message_id)}`)),
    ];
    if (recips.length > 1) parts.push(h("p", { class: "recipients" }, ...recips));
    head.replaceChildren(...parts);
    const checks = (x.checks ?? []).map(([text, ok]) => h("li", { dataset: { passed: String(Boolean(ok)) } },
      icon(ok ? "#i-tick" : "#i-cross"), String(text)));
    caught.replaceChildren(...(x.caught ? [caughtBanner(x.caught)] : []),
      ...(checks.length ? [h("ul", { class: "checks" }, ...checks)] : []));
    pad.replaceChildren(padding(x.sizes));
  }

  section(view, v) {
    const parts = [
      h("h3", {}, TITLES[view], v.party ? h("span", { class: "party" }, ` (${v.party})`) : ""),
      rowsTable(v.rows ?? []),
    ];
    if (view === "gateway" && v.hex) parts.push(hexBlock(v.hex));
    if (v.cannot_see?.length) parts.push(cannotSee(v.cannot_see));
    return parts;
  }
}

/** A biometric search's candidate list (rank, ref, score; threshold and cap) and its
 * step-2 confirmation. Refs, scores and ranks only: the probe itself never reaches the page. */
export function biometricBlock(b) {
  const parts = [];
  const list = b.candidates;
  if (list) {
    parts.push(h("table", { class: "candidates" },
      h("caption", {}, `${b.modality} candidates: score ≥ ${b.threshold.toFixed(2)}, ` +
        `${b.asked} asked, the owner's cap ${b.cap}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "rank"),
        h("th", { scope: "col" }, "candidate ref"), h("th", { scope: "col" }, "score"))),
      h("tbody", {}, ...(list.length ? list.map((c) => h("tr", { dataset: { rank: c.rank } },
        h("td", {}, String(c.rank)), h("td", { class: "ref" }, c.ref || "(hit only)"),
        h("td", {}, Number(c.score).toFixed(3))))
        : [h("tr", {}, h("td", { colspan: "3" }, "no candidate above the threshold"))]))));
  }
  const c = b.confirmation;
  if (c) {
    const ok = c.confirmed;
    const text = !c.answered ? `Step 2 for ${c.ref}: no answer`
      : `Step 2: ${c.ref} ${ok ? "confirmed" : "not confirmed"}, score ${Number(c.score).toFixed(3)}` +
        ` (confirm at ${b.confirm_threshold.toFixed(2)})${c.released ? "; the owner released the person" : ""}`;
    parts.push(h("p", { class: `confirmation ${ok ? "confirmed" : "unconfirmed"}`,
      dataset: { confirmed: String(Boolean(ok)) } }, icon(ok ? "#i-tick" : "#i-cross"), text));
  }
  parts.push(h("p", { class: "muted" },
    `Probe: ${b.probe_bytes} bytes of template, sealed; never shown.`));
  return h("div", { class: "biometric" }, ...parts);
}

function empty(view) {
  return [h("h3", {}, TITLES[view]), h("p", { class: "muted" }, "Nothing to show yet.")];
}

function rowsTable(rows) {
  return h("table", { class: "rows" }, h("tbody", {}, ...rows.map(([k, v]) =>
    h("tr", {}, h("th", { scope: "row" }, String(k)), h("td", {}, String(v ?? ""))))));
}

/** Hex in 2-byte words (4 digits), 8 words a line. */
export function hexWords(hex) {
  const clean = String(hex).replace(/[^0-9a-fA-F]/g, "").toLowerCase();
  const words = clean.match(/.{1,4}/g) ?? [];
  const lines = [];
  for (let i = 0; i < words.length; i += 8) lines.push(words.slice(i, i + 8).join(" "));
  return lines.join("\n");
}

function hexBlock(hex) {
  const bytes = Math.floor(String(hex).length / 2);
  return h("figure", { class: "hex" },
    h("figcaption", {}, icon("#i-lock"), `Sealed bytes (first ${bytes}), as hex:`),
    h("pre", { class: "hex-block" }, hexWords(hex)));
}

function cannotSee(items) {
  return h("div", { class: "cannot-see" },
    h("p", {}, icon("#i-eye-off"), h("strong", {}, "Cannot see:")),
    h("ul", {}, ...items.map((i) => h("li", {}, icon("#i-eye-off"), h("s", {}, String(i))))));
}

function caughtBanner(c) {
  return h("div", { class: "caught", dataset: { where: c.where ?? "other" }, role: "alert" },
    icon("#i-cross"),
    h("span", {}, `Caught at ${c.where} (${c.party}): ${c.text ?? c.reason ?? ""}`));
}

function padding(sizes) {
  if (!sizes) return h("span");
  const q = sizes.query_sizes_seen ?? [];
  const a = sizes.answer_sizes_seen ?? [];
  const even = q.length === 1 && a.length <= 1;
  const text = even
    ? `Padding: every query ${q[0]} bytes${a.length ? `, every answer ${a[0]} bytes` : ""}`
    : `Sizes differ: queries ${q.join(", ") || "?"} bytes, answers ${a.join(", ") || "?"} bytes`;
  return h("p", { class: `padding ${even ? "even" : "uneven"}`, dataset: { even: String(even) } },
    icon(even ? "#i-tick" : "#i-cross"), text);
}

/** A small inline SVG using a symbol of the page's sprite. */
export function icon(href, cls = "icon") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", href);
  svg.append(use);
  return svg;
}

/** The shape that goes with an outcome, so it never rests on colour alone. */
export function outcomeShape(outcome) {
  if (GOOD_OUTCOMES.has(outcome)) return icon("#i-tick");
  if (BAD_OUTCOMES.has(outcome)) return icon("#i-cross");
  return icon("#i-dash");
}
