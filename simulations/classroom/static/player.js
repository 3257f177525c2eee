// player.js: the pace of the diagram. Arrows wait in a bounded queue and play one at a time
// (pace: slow / normal / fast); pause holds them (the oldest are dropped past QUEUE_MAX, and
// counted), step plays one, back takes the newest arrow back to the queue, replay re-animates
// rows already drawn. A backlog plays faster so the picture never lags the network by much,
// and one past FAST_FORWARD (while playing) skips to its newest arrows.

export const PACES = { slow: 2400, normal: 900, fast: 300 };
export const QUEUE_MAX = 400;
// queued arrows beyond which each plays faster: a lesson's query to every bureau plays at the
// chosen pace; a busy network's lanes (the ring view sets a lower bound) stay near live
export const CATCH_UP = { lanes: 30, ring: 6 };
// a backlog past FAST_FORWARD while playing (a query to ALL of 196 bureaus from a lane) skips
// to its newest KEEP arrows, counted as dropped: drawing hundreds at ~15 ms each held the
// page at a few frames a second and seconds behind, for arrows that scroll out unseen
// (the diagram keeps 40 rows). Paused, the queue keeps up to QUEUE_MAX for stepping.
export const FAST_FORWARD = 80;
export const KEEP = 40;
// An arrow moves at most this often (ms): 30 steps a second look smooth on a projector, and
// the frames between them change nothing, so the browser paints half as often (it shares
// the machine with the network it shows).
export const STEP_MS = 33;

export class Player {
  constructor(diagram, { onChange } = {}) {
    this.diagram = diagram;
    this.onChange = onChange ?? (() => {});
    this.queue = [];
    this.replays = [];
    this.paused = false;
    this.pace = "normal";
    this.catchUp = CATCH_UP.lanes;
    this.dropped = 0;
    this.drawn = 0;
    this.lagMs = 0;
    this.current = null; // {g, start, duration}
    this.tick = this.tick.bind(this);
    this.frame = 0;
  }

  get duration() {
    const base = PACES[this.pace];
    const over = this.queue.length - this.catchUp;
    // past the bound, the backlog drains in about a second
    return over <= 0 ? base : Math.max(16, Math.min(base, 1000 / (over + 1)));
  }

  /** Queue specs to draw; starts at once when playing and idle. */
  push(specs) {
    for (const spec of specs) {
      // the gateway writes its relay after the answer is back, so its event can come after
      // the client's outcome: put the answer's arrow before an outcome still waiting
      const early = spec.event === "query.relayed"
        ? this.queue.findIndex((q) => q.event === "query.returned" && q.message === spec.message)
        : -1;
      if (early >= 0) this.queue.splice(early, 0, spec);
      else this.queue.push(spec);
    }
    const over = this.queue.length - (this.paused ? QUEUE_MAX : FAST_FORWARD);
    if (over > 0) {
      const skip = this.paused ? over : this.queue.length - KEEP;
      this.queue.splice(0, skip);
      this.dropped += skip;
    }
    this.kick();
    this.onChange();
  }

  setPace(pace) {
    if (PACES[pace]) this.pace = pace;
    this.onChange();
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.kick();
    this.onChange();
  }

  toggle() {
    this.setPaused(!this.paused);
  }

  /** Play the next queued arrow (when paused); finish the running one first. */
  step() {
    if (this.current) this.finish();
    this.start(true);
    this.onChange();
  }

  /** Take the newest arrow back into the queue's front; pauses. Returns its spec. */
  back() {
    if (this.current) this.finish();
    this.paused = true;
    const spec = this.diagram.removeLast();
    if (spec) {
      this.queue.unshift(spec);
      this.drawn = Math.max(0, this.drawn - 1);
    }
    this.onChange();
    return spec;
  }

  /** Re-animate drawn rows, one after the other, even while paused. */
  replay(rows) {
    if (!rows.length) return;
    for (const g of rows) this.diagram.place(g, 0);
    this.replays.push(...rows);
    if (!this.current) this.start(true);
  }

  /** Drop everything queued (a new hello rebuilds the picture). */
  clear() {
    this.queue = [];
    this.replays = [];
    this.current = null;
    this.onChange();
  }

  kick() {
    if (!this.current && !this.paused) this.start(false);
  }

  start(force) {
    if (this.current) return;
    let g = this.replays.shift();
    if (!g) {
      if (this.paused && !force) return;
      const spec = this.queue.shift();
      if (!spec) return;
      if (!this.diagram.canDraw(spec)) {
        // its lanes left the picture while it waited (the trainer changed the lanes)
        this.start(force);
        return;
      }
      g = this.diagram.add(spec);
      this.drawn += 1;
      // how long after the event happened its arrow started (ms; both clocks are this machine's)
      if (spec.time) this.lagMs = Math.round(Date.now() - spec.time * 1000);
    }
    const duration = g.spec.mark ? this.duration / 2 : this.duration;
    this.current = { g, start: performance.now(), duration };
    this.diagram.place(g, 0.02);
    g.classList.add("moving");
    if (!this.frame) this.frame = requestAnimationFrame(this.tick);
  }

  tick(now) {
    this.frame = 0;
    const cur = this.current;
    if (!cur) return;
    const t = Math.min(1, (now - cur.start) / cur.duration);
    if (t < 1 && now - (cur.moved ?? 0) < STEP_MS && cur.g.isConnected) {
      this.frame = requestAnimationFrame(this.tick);
      return;
    }
    cur.moved = now;
    if (!cur.g.isConnected) {
      this.current = null;
    } else if (t >= 1) {
      this.finish();
    } else {
      this.diagram.place(cur.g, ease(t));
    }
    if (!this.current) {
      this.start(this.replays.length > 0);
      this.onChange();
    }
    if (this.current && !this.frame) this.frame = requestAnimationFrame(this.tick);
  }

  finish() {
    const cur = this.current;
    this.current = null;
    if (!cur) return;
    cur.g.classList.remove("moving");
    if (cur.g.isConnected) this.diagram.place(cur.g, 1);
  }
}

function ease(t) {
  return t < 0.5 ? 2 * t * t : 1 - (-2 * t + 2) ** 2 / 2;
}
