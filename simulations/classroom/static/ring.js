// ring.js: the view of a large network (layout "ring"): every bureau a labelled dot on a
// circle, the gateway in the centre, traffic as arcs through the centre that fade in ~2 s.
// Drawn on one <canvas>, coalesced per animation frame, with a bounded list of live arcs, so
// hundreds of events a second cost a redraw, not DOM nodes. The dots and labels change only
// with the layout, the picks and the faults: they are drawn once on an offscreen canvas and
// copied on each frame, not redrawn (~200 rotated labels a frame cost a busy page most of
// its CPU, on the machine that runs the network).

import { GATEWAY } from "./mapping.js";

const FADE_MS = 2000;
const MAX_ARCS = 1500;
const FADE_STEPS = 8;
// arcs fade in FADE_STEPS steps and events come in ~100 ms batches, so while only arcs are
// live the ring is redrawn at most this often, not on every frame; a flash animates on each
const ARC_FRAME_MS = 100;

const COLOURS = {
  query: "#1d4ed8", answer: "#047857", message: "#374151", diffusion: "#7c3aed",
  notice: "#b91c1c", notice_request: "#b91c1c", receipt: "#6b7280", refused: "#dc2626",
  fault: "#dc2626", attack: "#dc2626",
};
const DASH = { answer: [8, 5], receipt: [2, 4] };

export class Ring {
  constructor(canvas, { onPick } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onPick = onPick;
    this.bureaus = [];
    this.pos = new Map();
    this.arcs = [];
    this.flashes = [];
    this.picked = new Set();
    this.status = {};
    this.drawn = 0;
    this.frame = 0;
    this.timer = 0;
    this.lastDraw = -Infinity;
    this.draw = this.draw.bind(this);
    new ResizeObserver(() => this.layout()).observe(canvas.parentElement);
    canvas.addEventListener("click", (e) => this.click(e));
  }

  setBureaus(codes) {
    this.bureaus = codes.filter((c) => c !== GATEWAY);
    this.layout();
  }

  setPicked(codes) {
    this.picked = new Set(codes);
    this.base = null;
    this.request();
  }

  setStatus(status) {
    this.status = { ...status };
    this.base = null;
    this.request();
  }

  layout() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const size = Math.max(200, Math.floor(Math.min(box.width, box.height)));
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = size * dpr;
    this.canvas.height = size * dpr;
    this.canvas.style.width = `${size}px`;
    this.canvas.style.height = `${size}px`;
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.dpr = dpr;
    this.base = null;
    this.size = size;
    const c = size / 2;
    const r = c - (this.bureaus.length > 60 ? 40 : 30);
    this.centre = { x: c, y: c };
    this.radius = r;
    this.pos = new Map([[GATEWAY, { x: c, y: c }]]);
    const n = Math.max(1, this.bureaus.length);
    this.bureaus.forEach((code, i) => {
      const a = (2 * Math.PI * i) / n - Math.PI / 2;
      this.pos.set(code, { x: c + r * Math.cos(a), y: c + r * Math.sin(a), a, i });
    });
    this.request();
  }

  /** Add what one event draws (mapping.ringFor); drawn on the next frame. */
  add(item, now = performance.now()) {
    if (!item) return;
    if (item.at !== undefined) {
      if (this.pos.has(item.at)) this.flashes.push({ ...item, born: now });
    } else if (this.pos.has(item.from) && this.pos.has(item.to)) {
      this.arcs.push({ ...item, born: now });
      this.drawn += 1;
    }
    if (this.arcs.length > MAX_ARCS) this.arcs.splice(0, this.arcs.length - MAX_ARCS);
    if (this.flashes.length > 200) this.flashes.splice(0, this.flashes.length - 200);
    this.request();
  }

  request() {
    if (this.frame || this.timer) return;
    const wait = this.flashes.length ? 0 : this.lastDraw + ARC_FRAME_MS - performance.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = 0;
        this.request();
      }, wait);
    } else {
      this.frame = requestAnimationFrame(this.draw);
    }
  }

  draw(now) {
    this.frame = 0;
    this.lastDraw = now;
    const { ctx, size, centre } = this;
    if (!size) return;
    ctx.clearRect(0, 0, size, size);
    this.arcs = this.arcs.filter((a) => now - a.born < FADE_MS);
    this.flashes = this.flashes.filter((f) => now - f.born < FADE_MS);
    // traffic
    // one stroke per (kind, fade step), not per arc: hundreds of arcs cost a few strokes
    ctx.lineWidth = this.arcs.length > 200 ? 1.2 : 2;
    const buckets = new Map();
    for (const arc of this.arcs) {
      const step = Math.min(FADE_STEPS - 1, Math.floor(((now - arc.born) / FADE_MS) * FADE_STEPS));
      const key = `${arc.kind}|${step}`;
      let path = buckets.get(key);
      if (!path) buckets.set(key, (path = new Path2D()));
      const p = this.pos.get(arc.from);
      const q = this.pos.get(arc.to);
      path.moveTo(p.x, p.y);
      path.quadraticCurveTo(centre.x, centre.y, q.x, q.y);
    }
    for (const [key, path] of buckets) {
      const [kind, step] = key.split("|");
      ctx.globalAlpha = 0.85 * (1 - Number(step) / FADE_STEPS);
      ctx.strokeStyle = COLOURS[kind] ?? COLOURS.message;
      ctx.setLineDash(DASH[kind] ?? []);
      ctx.stroke(path);
    }
    ctx.setLineDash([]);
    ctx.globalAlpha = 1;
    if (!this.base) this.base = this.paintBase();
    ctx.drawImage(this.base, 0, 0, size, size);
    // refusals, faults, attacks: a red ring that widens and fades
    for (const f of this.flashes) {
      const p = this.pos.get(f.at);
      const age = (now - f.born) / FADE_MS;
      ctx.strokeStyle = COLOURS[f.kind] ?? COLOURS.refused;
      ctx.globalAlpha = 1 - age;
      ctx.lineWidth = 3;
      ctx.beginPath();
      ctx.arc(p.x, p.y, 8 + 18 * age, 0, 2 * Math.PI);
      ctx.stroke();
      cross(ctx, p.x, p.y, 6);
    }
    ctx.globalAlpha = 1;
    if (this.arcs.length || this.flashes.length) this.request();
  }

  /** The gateway and the bureaus' dots and labels, on a canvas of their own. */
  paintBase() {
    const { size, centre, dpr } = this;
    const base = document.createElement("canvas");
    base.width = size * dpr;
    base.height = size * dpr;
    const ctx = base.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    // the gateway
    ctx.fillStyle = "#111827";
    ctx.beginPath();
    ctx.arc(centre.x, centre.y, 20, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = "#ffffff";
    ctx.font = "bold 13px 'DejaVu Sans', sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("GW", centre.x, centre.y);
    // the bureaus: many of them get small labels along the radius, on two tiers, so
    // neighbours do not overlap; picked and faulty ones are drawn last, larger
    const small = this.bureaus.length > 60;
    const order = [...this.bureaus].sort((a, b) => this.weight(a) - this.weight(b));
    for (const code of order) {
      const p = this.pos.get(code);
      const picked = this.picked.has(code);
      const down = this.status[code];
      const big = picked || down;
      ctx.fillStyle = down ? "#dc2626" : picked ? "#1d4ed8" : "#374151";
      ctx.beginPath();
      ctx.arc(p.x, p.y, big ? 7 : small ? 3 : 5, 0, 2 * Math.PI);
      ctx.fill();
      if (down) cross(ctx, p.x, p.y, 7);
      const tier = small && !big && p.i % 2 ? 24 : 12;
      const lr = this.radius + (big && small ? 22 : tier);
      ctx.save();
      ctx.translate(centre.x + lr * Math.cos(p.a), centre.y + lr * Math.sin(p.a));
      if (small && !big) {
        const flip = Math.cos(p.a) < 0;
        ctx.rotate(flip ? p.a + Math.PI : p.a);
        ctx.textAlign = flip ? "right" : "left";
      }
      ctx.fillStyle = down ? "#b91c1c" : "#111827";
      ctx.font = `${big ? "bold 16px" : small ? "9px" : "14px"} 'DejaVu Sans', sans-serif`;
      if (big) {
        ctx.fillStyle = "rgba(255,255,255,0.85)";
        ctx.fillRect(-14, -9, 28, 18);
        ctx.fillStyle = down ? "#b91c1c" : "#1d4ed8";
      }
      ctx.fillText(code, 0, 0);
      ctx.restore();
      ctx.textAlign = "center";
    }
    return base;
  }

  weight(code) {
    return this.status[code] ? 2 : this.picked.has(code) ? 1 : 0;
  }

  click(e) {
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const y = e.clientY - rect.top;
    let best = null;
    let bestD = 14 * 14;
    for (const code of this.bureaus) {
      const p = this.pos.get(code);
      const d = (p.x - x) ** 2 + (p.y - y) ** 2;
      if (d < bestD) [best, bestD] = [code, d];
    }
    if (best) this.onPick?.(best);
  }
}

function cross(ctx, x, y, r) {
  ctx.save();
  ctx.strokeStyle = "#7f1d1d";
  ctx.lineWidth = 2.5;
  ctx.beginPath();
  ctx.moveTo(x - r, y - r);
  ctx.lineTo(x + r, y + r);
  ctx.moveTo(x + r, y - r);
  ctx.lineTo(x - r, y + r);
  ctx.stroke();
  ctx.restore();
}
