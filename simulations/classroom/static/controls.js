// controls.js: the trainer's actions in the side panel: the query form (with planted records
// so a hit is sure), a border camera's face search, diffusions, red notices and their withdrawal, attacks and faults. Each
// posts one /api call through api.busy(), so a failure becomes a message and never leaves a
// control disabled.

import { busy, getJson, postJson, say } from "./api.js";
import { $, $$, h, setOptions } from "./dom.js";
import { laneStatus, outcomeWord } from "./mapping.js";
import { icon } from "./views.js";

const KIND_FIELDS = {
  document: ["number", "issuer"],
  person: ["surname", "given_names", "date_of_birth"],
  vehicle: ["vin"],
};
const FAULT_TITLES = { kill: "Kill", pause: "Pause", partition: "Partition", slow: "Slow" };

export class Controls {
  /** hooks: onExchange(x), onBureaus({down, faults}), onState(state) after a refresh. */
  constructor(hooks) {
    this.hooks = hooks;
    this.state = null;
    this.query = $("#query-form");
    this.query.elements.kind.addEventListener("change", () => this.showKind());
    this.query.elements.to.addEventListener("change", () => this.fillPlanted());
    this.query.elements.planted.addEventListener("change", () => this.usePlanted());
    this.query.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendQuery();
    });
    $("#face-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.searchFaces(e.target);
    });
    $("#diffuse-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendDiffusion(e.target);
    });
    $("#notice-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendNotice(e.target);
    });
    $("#notices").addEventListener("click", (e) => {
      const b = e.target.closest("[data-withdraw]");
      if (b) this.withdraw(b);
    });
    $("#attacks").addEventListener("click", (e) => {
      const b = e.target.closest("[data-attack]");
      if (b) this.attack(b);
    });
    $("#faults").addEventListener("click", (e) => {
      const b = e.target.closest("[data-fault]");
      if (b) this.fault(b);
    });
    $("[data-heal]").addEventListener("click", (e) => this.heal(e.currentTarget, false));
    $("#heal-all").addEventListener("click", (e) => this.heal(e.currentTarget, true));
    for (const sel of $$("select[data-bureaus]")) {
      sel.addEventListener("change", () => { sel.dataset.touched = "1"; });
    }
    this.showKind();
  }

  /** A new state (hello, or /api/state): refill every list the panel offers. */
  setState(state) {
    this.state = state;
    const bureaus = state.bureaus ?? [];
    for (const sel of $$("select[data-bureaus]")) {
      setOptions(sel, bureaus, { extra: sel.hasAttribute("data-all") ? ["ALL"] : [] });
    }
    const pick = (sel, i) => {
      if (!sel.dataset.touched && bureaus[i]) sel.value = bureaus[i];
    };
    pick(this.query.elements.to, 1);
    pick($("#face-form").elements.to, 1);
    pick($("#attack-to"), 1);
    this.fillPlanted();
    this.setNotices(state.notices ?? []);
    this.setAttacks(state);
    this.setFaults(state.faults_available ?? [], state);
  }

  // ------------------------------------------------------------ query
  showKind() {
    const kind = this.query.elements.kind.value;
    for (const box of $$(".fields", this.query)) {
      const on = box.dataset.kind === kind;
      box.hidden = !on;
      for (const input of $$("input", box)) input.disabled = !on;
    }
  }

  planted() {
    const to = this.query.elements.to.value;
    const all = this.state?.planted ?? {};
    const codes = to === "ALL" ? Object.keys(all) : [to];
    return codes.flatMap((code) => (all[code] ?? []).map((rec, i) => ({
      key: `${code}:${i}`, code, rec,
    })));
  }

  fillPlanted() {
    const sel = this.query.elements.planted;
    const items = this.planted();
    sel.replaceChildren(
      h("option", { value: "" }, items.length ? "— pick one, or type below —" : "— none planted —"),
      ...items.map((p) => h("option", { value: p.key }, p.rec.label ?? `${p.rec.kind} (${p.code})`)));
  }

  usePlanted() {
    const p = this.planted().find((x) => x.key === this.query.elements.planted.value);
    if (!p) return;
    const kind = p.rec.kind in KIND_FIELDS ? p.rec.kind : "document";
    this.query.elements.kind.value = kind;
    this.showKind();
    for (const name of KIND_FIELDS[kind]) {
      this.query.elements[name].value = p.rec[name] ?? "";
    }
  }

  async sendQuery() {
    const f = this.query.elements;
    const kind = f.kind.value;
    const body = { from: f.from.value, to: f.to.value, kind };
    for (const name of KIND_FIELDS[kind]) {
      const value = f[name].value.trim();
      if (value) body[name] = value;
    }
    await busy($("button[type=submit]", this.query), async () => {
      const x = await postJson("/api/query", body);
      this.hooks.onExchange(x);
      say("info", `Query ${x.from} → ${x.to} (${x.kind}): ${outcomeWord(x.outcome)}.`);
    });
  }

  // ------------------------------------------------------------ face search
  async searchFaces(form) {
    const body = { from: form.elements.from.value, to: form.elements.to.value };
    await busy($("button[type=submit]", form), async () => {
      const x = await postJson("/api/face", body);
      this.hooks.onExchange(x);
      const b = x.biometric ?? {};
      const n = (b.candidates ?? []).length;
      const c = b.confirmation;
      say("info", `Face search ${x.from} → ${x.to}: ${n} candidate(s)` +
        (c ? `; candidate 1 ${c.confirmed ? "confirmed" : "not confirmed"}.` : "."));
    });
  }

  // ------------------------------------------------------------ posts
  async sendDiffusion(form) {
    const f = form.elements;
    const raw = f.to.value.trim().toUpperCase();
    const to = !raw || raw === "ALL" ? "ALL" : raw.split(/[\s,;]+/).filter(Boolean);
    const body = { from: f.from.value, to, subject: f.subject.value.trim() };
    if (f.text.value.trim()) body.text = f.text.value.trim();
    await busy($("button[type=submit]", form), async () => {
      const r = await postJson("/api/diffuse", body);
      say("info", `Diffusion from ${body.from} to ${r.recipients} bureau(s): ${r.outcome}.`);
    });
  }

  async sendNotice(form) {
    const f = form.elements;
    const body = { from: f.from.value, ...person(f) };
    await busy($("button[type=submit]", form), async () => {
      await postJson("/api/notice", body); // the server's status message says what GS did
      await this.refresh();
    });
  }

  async withdraw(button) {
    const body = { from: button.dataset.from, notice_id: button.dataset.withdraw };
    await busy(button, async () => {
      await postJson("/api/notice/withdraw", body);
      await this.refresh();
    });
  }

  setNotices(notices) {
    $("#notices").replaceChildren(...notices.map((n) => h("li", {},
      h("span", {}, h("strong", {}, `${n.requester}`), ` ${n.label ?? n.notice_id.slice(0, 8)} · ${n.state}`),
      n.state === "withdrawn" ? null
        : h("button", { type: "button", dataset: { withdraw: n.notice_id, from: n.requester } },
          "Withdraw"))));
  }

  async refresh() {
    const state = await getJson("/api/state");
    this.hooks.onState(state);
  }

  // ------------------------------------------------------------ attacks
  setAttacks(state) {
    const enabled = Boolean(state.attacks_enabled);
    const off = $("#attacks-off");
    const reason = "Attacks are off: they need a network started by ncbsim classroom " +
      "(this page is attached to another network).";
    off.hidden = enabled;
    off.textContent = enabled ? "" : reason;
    const buttons = (state.attacks ?? []).map((a, i) => {
      const b = h("button", { type: "button", dataset: { attack: a.name },
        title: enabled ? a.title : reason },
      h("strong", {}, `${i + 1}.`), ` ${a.title ?? a.name}`,
      h("small", {}, a.caught_at ? `caught at ${a.caught_at}` : ""));
      if (!enabled) {
        b.dataset.locked = reason;
        b.disabled = true;
      }
      return b;
    });
    $("#attacks").replaceChildren(...buttons);
  }

  async attack(button) {
    const body = { name: button.dataset.attack, from: $("#attack-from").value,
      to: $("#attack-to").value };
    await busy(button, async () => {
      const x = await postJson("/api/attack", body);
      this.hooks.onExchange(x);
      const c = x.caught;
      say(c ? "info" : "error", c ? `Attack ${body.name}: caught at ${c.where} (${c.party}).`
        : `Attack ${body.name}: not caught (outcome ${outcomeWord(x.outcome)}).`);
    });
  }

  // ------------------------------------------------------------ faults
  setFaults(available, state) {
    $("#faults").replaceChildren(...available.map((f) => h("button", {
      type: "button", dataset: { fault: f } }, FAULT_TITLES[f] ?? f)));
    this.showFaults(state);
  }

  showFaults({ faults = [], down = [] }) {
    const status = laneStatus(faults, down);
    $("#fault-list").replaceChildren(...Object.entries(status).map(([code, word]) =>
      h("li", { dataset: { bureau: code } }, icon("#i-bolt"), `${code}: ${word}`)));
  }

  async fault(button) {
    const body = { fault: button.dataset.fault, bureau: $("#fault-bureau").value };
    await busy(button, async () => {
      const r = await postJson("/api/fault", body);
      this.hooks.onBureaus(r); // the server's own status message says what it did
    });
  }

  async heal(button, all) {
    const body = all ? { all: true } : { bureau: $("#fault-bureau").value };
    await busy(button, async () => {
      const r = await postJson("/api/heal", body);
      this.hooks.onBureaus(r);
    });
  }
}

function person(f) {
  const out = {};
  for (const name of ["surname", "given_names", "date_of_birth"]) {
    const v = f[name].value.trim();
    if (v) out[name] = v;
  }
  return out;
}
