// diagram.js: the live sequence diagram (SVG). One vertical lane per bureau and one for the
// gateway in the middle; each envelope is an arrow that grows across at the player's pace and
// then stays in a scrolling history of the last MAX_ROWS arrows (older ones fade, the oldest
// leave the DOM, so the element count stays bounded).

import { s } from "./dom.js";
import { GATEWAY } from "./mapping.js";

export const MAX_ROWS = 40;
const ROW = 44; // px per arrow row
const FADE_AFTER = 16; // rows newer than this stay at full strength
const TOP_PAD = 34;

export class Diagram {
  /** head: the <svg> of lane labels; body: the <svg> of arrows; scroller: body's scroll box. */
  constructor({ head, body, scroller, onSelect }) {
    this.head = head;
    this.body = body;
    this.scroller = scroller;
    this.onSelect = onSelect;
    this.lanes = [];
    this.x = new Map();
    this.status = {};
    this.next = 0; // index of the next row
    this.rows = s("g", { class: "rows" });
    this.backdrop = s("g", { class: "backdrop" });
    this.body.append(this.backdrop, this.rows);
    this.body.addEventListener("click", (e) => {
      const g = e.target.closest?.("[data-message]");
      if (g) this.onSelect?.(g.dataset.message, g.dataset.correlation);
    });
    new ResizeObserver(() => this.layout()).observe(this.scroller);
  }

  /** Show these bureaus as lanes, the gateway in the middle. */
  setLanes(codes) {
    const bureaus = [...new Set(codes)].filter((c) => c && c !== GATEWAY);
    const half = Math.ceil(bureaus.length / 2);
    this.lanes = [...bureaus.slice(0, half), GATEWAY, ...bureaus.slice(half)];
    this.layout();
  }

  /** Lanes in a fault: {IT: "PAUSED"}; drawn greyed and hatched with the word. */
  setStatus(status) {
    this.status = { ...status };
    this.drawHead();
    this.drawBackdrop();
  }

  has(code) {
    return this.x.has(code);
  }

  /** Whether a spec's ends are lanes shown now. */
  canDraw(spec) {
    return this.has(spec.from) && this.has(spec.to);
  }

  get width() {
    return Math.max(320, this.scroller.clientWidth);
  }

  layout() {
    const w = this.width;
    const step = w / Math.max(1, this.lanes.length);
    this.x = new Map(this.lanes.map((code, i) => [code, Math.round(step * (i + 0.5))]));
    this.step = step;
    this.drawHead();
    this.drawBackdrop();
    for (const g of this.rows.children) this.place(g);
    this.resize();
  }

  drawHead() {
    const w = this.width;
    this.head.setAttribute("viewBox", `0 0 ${w} 78`);
    this.head.setAttribute("width", w);
    const nodes = [];
    for (const code of this.lanes) {
      const x = this.x.get(code);
      const word = this.status[code];
      const gw = code === GATEWAY;
      nodes.push(s("g", { class: `lane-head${gw ? " gateway" : ""}${word ? " down" : ""}`,
        dataset: { lane: code, status: word ?? "" } },
      s("rect", { x: x - Math.min(60, this.step / 2 - 4), y: 4,
        width: Math.min(120, this.step - 8), height: 40, rx: 8 }),
      s("text", { x, y: 34, class: "lane-label",
        // an attribute, not a style: the page's CSP allows no inline style
        "font-size": gw ? Math.min(22, Math.floor(this.step / 5.4)) : null },
      gw ? "gateway" : code),
      word ? s("g", { class: "lane-status" },
        s("use", { href: "#i-bolt", x: x - 46, y: 50, width: 22, height: 24 }),
        s("text", { x: x + 10, y: 70 }, word)) : null));
    }
    this.head.replaceChildren(...nodes);
  }

  drawBackdrop() {
    const height = Math.max(this.scroller.clientHeight, (this.count() + 1) * ROW + TOP_PAD);
    const nodes = [];
    for (const code of this.lanes) {
      const x = this.x.get(code);
      if (this.status[code]) {
        nodes.push(s("rect", { class: "lane-down", x: x - 22, y: 0, width: 44, height }));
      }
      nodes.push(s("line", { class: `lane-line${code === GATEWAY ? " gateway" : ""}`,
        x1: x, x2: x, y1: 0, y2: height }));
    }
    this.backdrop.replaceChildren(...nodes);
  }

  count() {
    return this.rows.childElementCount;
  }

  resize() {
    const w = this.width;
    const h = Math.max(this.scroller.clientHeight - 4, this.count() * ROW + TOP_PAD * 2);
    // Once the history is full its size stays the same: touch nothing (no relayout).
    if (w === this.drawnW && h === this.drawnH) return;
    this.drawnW = w;
    this.drawnH = h;
    this.body.setAttribute("viewBox", `0 0 ${w} ${h}`);
    this.body.setAttribute("width", w);
    this.body.setAttribute("height", h);
    this.drawBackdrop();
  }

  /** Draw a spec as a new row (not yet animated); returns its element. */
  add(spec) {
    const g = s("g", {
      class: `arrow kind-${spec.kind}${spec.mark ? " mark" : ""}`,
      dataset: {
        kind: spec.kind, event: spec.event, message: spec.message,
        correlation: spec.correlation, from: spec.from, to: spec.to,
        outcome: spec.outcome ?? "", row: this.next++,
      },
      tabindex: "-1",
    });
    g.spec = spec;
    this.rows.append(g);
    g.setAttribute("transform", `translate(0 ${TOP_PAD + g.dataset.row * ROW})`);
    let trimmed = false;
    while (this.count() > MAX_ROWS) {
      this.rows.firstElementChild.remove();
      trimmed = true;
    }
    if (trimmed) this.shift();
    this.fade();
    this.build(g, spec);
    this.place(g);
    this.resize();
    this.scroller.scrollTop = this.scroller.scrollHeight;
    return g;
  }

  /** Take back the newest row (the player's "back"); returns its spec. */
  removeLast() {
    const g = this.rows.lastElementChild;
    if (!g) return null;
    g.remove();
    this.next -= 1;
    this.fade();
    this.resize();
    return g.spec;
  }

  /** Each row sits at its own number's height; the container moves up as old rows leave,
   * so adding a row touches one row and one transform, not every row (a busy network adds
   * many a second). */
  shift() {
    const first = Number(this.rows.firstElementChild?.dataset.row ?? 0);
    this.rows.setAttribute("transform", `translate(0 ${-first * ROW})`);
  }

  /** Rows older than the newest FADE_AFTER fade: only the two at the border can change. */
  fade() {
    const rows = this.rows.children;
    const border = rows.length - FADE_AFTER;
    if (border - 1 >= 0) rows[border - 1].classList.add("old");
    if (border >= 0 && border < rows.length) rows[border].classList.remove("old");
  }

  /** Rows of one exchange: same message id or, for a multi-bureau query, correlation id. */
  rowsOf(messageIds, correlation) {
    return [...this.rows.children].filter((g) =>
      messageIds.includes(g.dataset.message) ||
      (correlation && g.dataset.correlation === correlation));
  }

  highlight(messageIds, correlation) {
    const pick = new Set(this.rowsOf(messageIds, correlation));
    for (const g of this.rows.children) g.classList.toggle("selected", pick.has(g));
  }

  build(g, spec) {
    g.replaceChildren();
    if (spec.mark) {
      g.append(s("rect", { class: "hit", x: 0, y: -ROW / 2, width: 10, height: ROW }));
      g.append(s("g", { class: "glyph" }, s("use", { href: glyphFor(spec), width: 26, height: 26,
        x: -13, y: -13 })));
      g.append(s("text", { class: "mark-label" }, [spec.label, spec.label2].filter(Boolean)
        .join(" · ")));
      return;
    }
    g.append(s("rect", { class: "hit", x: 0, y: -ROW / 2, width: 10, height: ROW }));
    if (spec.kind === "diffusion") {
      g.append(s("line", { class: "shaft s1" }), s("line", { class: "shaft s2" }));
    } else {
      g.append(s("line", { class: "shaft" }));
    }
    g.append(s("path", { class: "head" }));
    g.append(s("g", { class: "token" },
      s("use", { href: badgeFor(spec.kind), width: 24, height: 24, x: -12, y: -12 }),
      spec.sealed ? s("use", { href: "#i-lock", width: 16, height: 18, x: 13, y: -9,
        class: "lock" }) : null));
    g.append(s("text", { class: "arrow-label" }, spec.label));
  }

  /** Put a row's parts at progress t (0..1) of its travel from one lane to the other. */
  place(g, t = g.progress ?? 1) {
    g.progress = t;
    const spec = g.spec;
    const x1 = this.x.get(spec.from);
    const x2 = this.x.get(spec.to);
    if (x1 === undefined || x2 === undefined) {
      g.setAttribute("visibility", "hidden");
      return;
    }
    g.removeAttribute("visibility");
    const hit = g.querySelector(".hit");
    if (spec.mark) {
      const pop = Math.min(1, t * 1.6);
      const glyph = g.querySelector(".glyph");
      glyph.setAttribute("transform", `translate(${x1} 0) scale(${0.4 + 0.6 * pop})`);
      const label = g.querySelector(".mark-label");
      const right = x1 < this.width - 260;
      label.setAttribute("x", right ? x1 + 20 : x1 - 20);
      label.setAttribute("y", 7);
      label.setAttribute("text-anchor", right ? "start" : "end");
      label.style.opacity = pop;
      hit.setAttribute("x", Math.min(x1 - 16, right ? x1 - 16 : x1 - 260));
      hit.setAttribute("width", 276);
      return;
    }
    const dir = Math.sign(x2 - x1) || 1;
    const tip = x1 + (x2 - x1) * t;
    for (const line of g.querySelectorAll(".shaft")) {
      const dy = line.classList.contains("s1") ? -3 : line.classList.contains("s2") ? 3 : 0;
      line.setAttribute("x1", x1);
      line.setAttribute("x2", tip - dir * 6);
      line.setAttribute("y1", dy);
      line.setAttribute("y2", dy);
    }
    g.querySelector(".head").setAttribute("d",
      `M ${tip} 0 L ${tip - dir * 14} -8 L ${tip - dir * 14} 8 Z`);
    const mid = t < 1 ? tip - dir * 26 : (x1 + x2) / 2;
    g.querySelector(".token").setAttribute("transform", `translate(${mid} 0)`);
    const label = g.querySelector(".arrow-label");
    label.setAttribute("x", (x1 + x2) / 2);
    label.setAttribute("y", -15);
    label.style.opacity = t < 1 ? 0.35 : 1;
    hit.setAttribute("x", Math.min(x1, x2));
    hit.setAttribute("width", Math.abs(x2 - x1) || 10);
  }
}

function badgeFor(kind) {
  return {
    query: "#i-query", answer: "#i-answer", diffusion: "#i-diffusion", notice: "#i-notice",
    notice_request: "#i-notice-request", message: "#i-message", receipt: "#i-receipt",
  }[kind] ?? "#i-message";
}

function glyphFor(spec) {
  if (spec.kind === "outcome") {
    if (spec.outcome === "hit" || spec.outcome === "record") return "#i-tick";
    if (["no_answer", "failed", "error"].includes(spec.outcome)) return "#i-cross";
    return "#i-dash";
  }
  return {
    refused: "#i-cross", no_answer: "#i-cross", fault: "#i-bolt", heal: "#i-tick",
    attack: "#i-attack", process: "#i-bolt",
  }[spec.kind] ?? "#i-dash";
}
