// lesson.js: the guided lesson (simulations/lesson.py's script, as /api/state lists it).
// Start, next and previous each POST /api/lesson {"step": n}; the caption box shows the
// step's title and caption large, the progress "3 / 14", and the step's checks with a tick
// or a cross as its records come. The stream's "lesson" messages keep it in step when the
// lesson is driven from elsewhere.

import { busy, postJson, say } from "./api.js";
import { $, h } from "./dom.js";
import { icon } from "./views.js";

export class Lesson {
  constructor({ onExchange }) {
    this.onExchange = onExchange;
    this.root = $("#lesson");
    this.steps = [];
    this.index = -1; // the step shown; -1 before the start
    this.results = new Map(); // step -> "passed" | "failed" | "skipped"
    this.captions = new Map(); // step -> its caption as filled by the step that ran
    this.running = false;
    $("#lesson-start").addEventListener("click", () => this.run(0));
    $("#lesson-next").addEventListener("click", () => this.next());
    $("#lesson-prev").addEventListener("click", () => this.prev());
    this.root.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target === this.root) {
        e.preventDefault();
        this.next();
      }
    });
    this.render();
  }

  setSteps(steps) {
    this.steps = steps ?? [];
    this.render();
  }

  get total() {
    return this.steps.length;
  }

  next() {
    if (this.running) return;
    if (this.index < 0) {
      this.run(0);
    } else if (this.index + 1 < this.total) {
      this.run(this.index + 1);
    } else {
      say("info", "The lesson is over: Start plays it again from step 1.");
    }
  }

  prev() {
    if (this.running) return;
    this.run(Math.max(0, this.index - 1));
  }

  async run(n) {
    if (this.running || n < 0 || n >= this.total) {
      if (!this.total) say("error", "This network has no lesson steps.");
      return;
    }
    this.index = n;
    this.running = true;
    this.captions.delete(n);
    this.checks = [];
    this.root.dataset.state = "running";
    this.render();
    const buttons = ["#lesson-start", "#lesson-next", "#lesson-prev"].map((id) => $(id));
    let reply;
    try {
      reply = await busy(buttons, () => postJson("/api/lesson", { step: n }));
    } finally {
      this.running = false;
    }
    if (reply) {
      for (const x of reply.records ?? []) this.onExchange(x);
      const state = reply.state ?? (reply.passed ? "passed" : "failed");
      this.finish(n, state, reply.checks ?? [], reply.caption);
    } else {
      this.root.dataset.state = "failed";
      this.render();
    }
  }

  finish(n, state, checks, caption) {
    this.results.set(n, state);
    if (caption) this.captions.set(n, caption);
    this.checks = checks;
    this.root.dataset.state = n === this.total - 1 ? "done" : "ready";
    this.root.dataset.passed = String(state === "passed");
    this.render();
  }

  /** A "lesson" stream message: {step, total, title, caption, state, checks}. */
  update(msg) {
    if (typeof msg.step !== "number") return;
    this.index = msg.step;
    if (msg.checks) this.checks = msg.checks;
    if (msg.state === "passed" || msg.state === "failed" || msg.state === "skipped") {
      this.finish(msg.step, msg.state, msg.checks ?? [], msg.caption);
      return;
    }
    if (msg.state === "running") this.root.dataset.state = "running";
    this.render(msg);
  }

  render(msg = {}) {
    const step = this.steps[this.index] ?? {};
    const title = msg.title ?? step.title ?? "";
    const caption = msg.caption ?? this.captions.get(this.index) ?? step.caption ?? "";
    const total = msg.total ?? this.total;
    $("#lesson-progress").textContent = `${Math.max(0, this.index + 1)} / ${total}`;
    $("#lesson-start").textContent = this.index < 0 ? "Start" : "Restart";
    const box = $("#caption");
    box.hidden = this.index < 0;
    if (this.index >= 0) {
      box.replaceChildren(
        h("h2", {}, `${this.index + 1}. ${title}`),
        h("p", {}, caption),
        ...checksList(this.checks ?? [], "checks"),
      );
      box.dataset.step = this.index;
    }
    $("#lesson-checks").replaceChildren(...checkItems(this.checks ?? []));
    $("#lesson-steps").replaceChildren(...this.steps.map((s, i) => h("li", {
      "aria-current": i === this.index ? "step" : null,
      dataset: { state: this.results.get(i) ?? "" },
    }, this.results.has(i) ? icon(STATE_ICONS[this.results.get(i)]) : "", s.title)));
  }
}

const STATE_ICONS = { passed: "#i-tick", failed: "#i-cross", skipped: "#i-dash" };

function checkItems(checks) {
  return checks.map(([text, ok]) => h("li", { dataset: { passed: String(Boolean(ok)) } },
    icon(ok ? "#i-tick" : "#i-cross"), `${ok ? "" : "FAILED: "}${text}`));
}

function checksList(checks, cls) {
  return checks.length ? [h("ul", { class: cls }, ...checkItems(checks))] : [];
}
