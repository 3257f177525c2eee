// mapping.js: what each stream event (docs/events.md) draws. Pure functions, no DOM:
// arrowsFor(event) gives the sequence diagram's arrows and marks, ringFor(event) the ring's
// arcs, laneStatus(...) a lane's fault label. Everything else reads these.

export const GATEWAY = "gateway";

/** The bureau a party acts as: "client:FR", "FR" and a user of FR's ("client:FR/cdg-border-12")
 * are all FR's lane; others are themselves. */
export function bureauOf(party) {
  if (!party) return "";
  return laneOf(party.startsWith("client:") ? party.slice("client:".length) : party);
}

/** The lane of a principal: a user "FR/cdg-border-12" acts through FR's. */
export function laneOf(principal) {
  return principal ? String(principal).split("/")[0] : principal;
}

/** Arrow kinds (data-kind) of envelopes, and the marks drawn on one lane. */
export const ENVELOPE_KINDS = [
  "query", "answer", "message", "diffusion", "notice", "notice_request", "receipt",
];
export const MARK_KINDS = ["refused", "no_answer", "outcome", "fault", "heal", "attack", "process"];

const FAULT_LABEL = {
  kill: "DOWN", pause: "PAUSED", partition: "CUT", slow: "SLOW", latency: "SLOW", loss: "LOSSY",
  stop: "DOWN", skew: "SKEWED",
};

/** The word on a lane that a fault leaves it in. */
export function faultLabel(fault) {
  return FAULT_LABEL[fault] ?? String(fault ?? "FAULT").toUpperCase();
}

const OUTCOME_WORD = {
  hit: "hit", record: "record", no_hit: "no-hit", not_found: "not found",
  no_answer: "no answer", failed: "failed", error: "error",
};
export const GOOD_OUTCOMES = new Set(["hit", "record"]);
export const BAD_OUTCOMES = new Set(["no_answer", "failed", "error"]);

export function outcomeWord(outcome) {
  return OUTCOME_WORD[outcome] ?? String(outcome ?? "").replaceAll("_", " ");
}

function base(event, fields) {
  return {
    event: event.kind,
    message: event.message_id ?? "",
    correlation: event.correlation_id ?? "",
    time: event.time ?? 0,
    sealed: false,
    label: "",
    ...fields,
  };
}

function arrow(event, kind, from, to, fields = {}) {
  return base(event, { kind, from, to, sealed: kind !== "receipt", ...fields });
}

function mark(event, kind, at, label, fields = {}) {
  return base(event, { kind, from: at, to: at, at, label, mark: true, ...fields });
}

const postKind = (k) =>
  ["message", "diffusion", "notice", "notice_request"].includes(k) ? k : "message";

/** The arrows and marks one event draws on the sequence diagram (often none). */
export function arrowsFor(event) {
  const v = event.view ?? {};
  const party = event.party ?? "";
  const me = bureauOf(party);
  const bytes = v.bytes ? `${v.bytes} B` : "";
  switch (event.kind) {
    case "query.sealed":
      return [arrow(event, "query", me, GATEWAY, { label: `to ${v.recipient ?? "?"} ${bytes}` })];
    case "query.opened":
      return [arrow(event, "query", GATEWAY, me, { label: `opened ${bytes}` })];
    case "query.answered":
      return [arrow(event, "answer", me, GATEWAY, {
        label: v.response_bytes ? `${v.response_bytes} B` : "answer",
      })];
    case "query.relayed":
      if (v.outcome === "delivered") {
        return [arrow(event, "answer", GATEWAY, laneOf(v.sender), {
          label: `from ${v.recipient ?? "?"} ${v.response_bytes ? `${v.response_bytes} B` : ""}`,
        })];
      }
      if (v.outcome === "refused") {
        return [mark(event, "refused", laneOf(v.recipient), `refused (${v.status ?? "?"})`)];
      }
      return [mark(event, "no_answer", GATEWAY, `no answer from ${v.recipient ?? "?"}`)];
    case "query.refused":
    case "post.refused":
    case "post.rejected":
      return [mark(event, "refused", party === GATEWAY ? GATEWAY : me,
        `refused: ${v.reason ?? v.status ?? "?"}`)];
    case "post.expired":
      return [mark(event, "refused", GATEWAY, `expired for ${v.recipient ?? "?"}`)];
    case "call.refused":
      return [mark(event, "refused", party === GATEWAY ? GATEWAY : me,
        `refused ${v.rpc ?? "call"}: ${v.reason ?? "?"}`)];
    case "query.returned":
      return [mark(event, "outcome", me, outcomeWord(v.outcome), {
        outcome: v.outcome ?? "", label2: v.recipient ? `from ${v.recipient}` : "",
      })];
    case "post.sealed":
      return [arrow(event, postKind(v.kind), me, GATEWAY, {
        label: `to ${v.recipient ?? "?"} ${bytes}`,
      })];
    case "post.delivered":
      if (party !== GATEWAY) return [];
      return [
        arrow(event, postKind(v.kind), GATEWAY, laneOf(v.recipient), {
          label: `from ${v.sender ?? "?"}`,
        }),
        arrow(event, "receipt", laneOf(v.recipient), GATEWAY, { label: "receipt" }),
      ];
    case "fault.applied":
      return [mark(event, "fault", v.target, `${v.fault ?? "fault"}: ${faultLabel(v.fault)}`, {
        fault: v.fault ?? "",
      })];
    case "fault.healed":
      return [mark(event, "heal", v.target, `healed (${v.fault ?? "fault"})`)];
    case "fault.failed":
      return [mark(event, "refused", v.target, `${v.action ?? "fault"} failed: ${v.reason ?? "?"}`)];
    case "process.stopped":
    case "process.started": {
      const role = v.role ?? "";
      if (!["node", "host", "gateway"].includes(role)) return [];
      const stopped = event.kind === "process.stopped";
      const targets = role === "gateway" ? [GATEWAY] : lanesOfProcess(party, v);
      return targets.map((t) => mark(event, stopped ? "process" : "heal", t,
        stopped ? "process stopped" : "process started", { stopped }));
    }
    case "attack.applied":
      return [mark(event, "attack", GATEWAY,
        `attack: ${v.attack ?? "?"}${v.variant ? ` (${v.variant})` : ""}`, {
          label2: v.sender && v.recipient ? `${v.sender} → ${v.recipient}` : "",
        })];
    default:
      return [];
  }
}

function lanesOfProcess(party, view) {
  if (view.bureaus) return String(view.bureaus).split(",").map((b) => b.trim()).filter(Boolean);
  const me = bureauOf(party);
  return /^[A-Z]{2}$/.test(me) ? [me] : [];
}

/**
 * What one event draws on the ring: an arc {from, to, kind} between two bureaus (through
 * the centre), a flash {at, kind} on one bureau (at "gateway": the centre), or null.
 */
export function ringFor(event) {
  const v = event.view ?? {};
  const me = bureauOf(event.party);
  switch (event.kind) {
    case "query.sealed":
      return v.recipient ? { from: me, to: laneOf(v.recipient), kind: "query" } : null;
    case "query.relayed":
      if (v.outcome === "delivered") {
        return { from: laneOf(v.recipient), to: laneOf(v.sender), kind: "answer" };
      }
      return { at: v.outcome === "refused" ? laneOf(v.recipient) : GATEWAY, kind: "refused" };
    case "post.delivered":
      if (event.party !== GATEWAY) return null;
      return { from: laneOf(v.sender), to: laneOf(v.recipient), kind: postKind(v.kind) };
    case "query.refused":
    case "post.refused":
    case "post.rejected":
    case "call.refused":
      return { at: event.party === GATEWAY ? GATEWAY : me, kind: "refused" };
    case "fault.applied":
      return { at: v.target, kind: "fault" };
    case "attack.applied":
      return { at: GATEWAY, kind: "attack" };
    default:
      return null;
  }
}

/**
 * Each lane's fault word from the server's faults ([{fault, targets}]) and down list:
 * {IT: "PAUSED"}. A bureau down with no fault named is "DOWN".
 */
export function laneStatus(faults = [], down = []) {
  const out = {};
  for (const f of faults ?? []) {
    for (const t of f.targets ?? []) out[t] = faultLabel(f.fault);
  }
  for (const d of down ?? []) out[d] ??= "DOWN";
  return out;
}
