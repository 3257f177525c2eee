// order.js: puts arrows back in the order things happened. The server merges the streams of
// the client, the gateway and each node, which reach it at different delays, so an arrow can
// arrive before one that happened earlier. A short hold (HOLD_MS) sorts each lot by event
// time, and a client's outcome waits (up to WAIT_MS) for the gateway's relay of the same
// envelope, so the answer's arrow is drawn before the badge it brought.

export const HOLD_MS = 300;
export const WAIT_MS = 2500;
const SETTLED = new Set(["query.relayed", "query.refused"]);

export class Reorder {
  constructor(push, { hold = HOLD_MS, wait = WAIT_MS } = {}) {
    this.push = push;
    this.hold = hold;
    this.wait = wait;
    this.pending = [];
    this.timer = 0;
    this.settled = new Set(); // message ids the gateway has relayed or refused (bounded)
    this.waiting = new Map(); // message id -> {specs, timer}
  }

  add(specs) {
    if (!specs.length) return;
    this.pending.push(...specs);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.hold);
  }

  flush() {
    this.timer = 0;
    const lot = this.pending.sort((a, b) => a.time - b.time);
    this.pending = [];
    const out = [];
    for (const spec of lot) {
      if (spec.event === "query.returned" && spec.message && !this.settled.has(spec.message)) {
        this.park(spec);
        continue;
      }
      out.push(spec);
      if (SETTLED.has(spec.event) && spec.message) this.settle(spec.message, out);
    }
    if (out.length) this.push(out);
  }

  park(spec) {
    const held = this.waiting.get(spec.message);
    if (held) {
      held.specs.push(spec);
      return;
    }
    const timer = setTimeout(() => {
      const h = this.waiting.get(spec.message);
      this.waiting.delete(spec.message);
      if (h) this.push(h.specs);
    }, this.wait);
    this.waiting.set(spec.message, { specs: [spec], timer });
  }

  settle(message, out) {
    this.settled.add(message);
    if (this.settled.size > 5000) this.settled = new Set([...this.settled].slice(-2500));
    const held = this.waiting.get(message);
    if (held) {
      clearTimeout(held.timer);
      this.waiting.delete(message);
      out.push(...held.specs);
    }
  }

  clear() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.pending = [];
    for (const h of this.waiting.values()) clearTimeout(h.timer);
    this.waiting.clear();
  }
}
