// classroom.js: the classroom page (its entry module). Wires the stream to the diagram (lanes, player, ring), the
// "View as" panel, the controls and the lesson; keeps the network's state (bureaus, layout,
// faults) and window.ncbsimStats ({fps, events, arrows, dropped}) for the benchmark.

import { getJson, say } from "./api.js";
import { Controls } from "./controls.js";
import { Diagram } from "./diagram.js";
import { $ } from "./dom.js";
import { installKeys } from "./keys.js";
import { Lesson } from "./lesson.js";
import { GATEWAY, arrowsFor, bureauOf, faultLabel, laneStatus, ringFor } from "./mapping.js";
import { Reorder } from "./order.js";
import { CATCH_UP, Player } from "./player.js";
import { Ring } from "./ring.js";
import { Stream } from "./stream.js";
import { ViewPanel } from "./views.js";

const MAX_PICKED = 8;

// fps over the last second; events received; arrows drawn (lanes and ring); events dropped
// (by the server's queue for this browser, and by the paused player's queue); and, for the
// benchmark's own use, arrows queued, rows in the DOM and the last arrow's lag behind its event
const stats = { fps: 0, events: 0, arrows: 0, dropped: 0, queued: 0, rows: 0, lag_ms: 0 };
window.ncbsimStats = stats;

let state = null;
let serverDropped = 0;
let faults = { faults: [], down: [] };
let eventStatus = {}; // lane -> word, from fault/process events since the last "bureaus"
let picked = [];

const diagram = new Diagram({
  head: $("#lane-head"),
  body: $("#lane-body"),
  scroller: $("#lane-scroll"),
  onSelect: (message, correlation) => views.selectByMessage(message, correlation),
});
const player = new Player(diagram, { onChange: showPlayer });
const reorder = new Reorder((specs) => player.push(specs.filter((s) => diagram.canDraw(s))));
const ring = new Ring($("#ring"), { onPick: (code) => togglePick(code) });
const views = new ViewPanel($("#view-panel"), {
  onSelect: (x) => diagram.highlight(x ? [x.message_id] : [], x?.correlation_id),
});
const controls = new Controls({
  onExchange: (x) => views.add(x),
  onBureaus: (b) => setBureaus(b),
  onState: (s) => applyState(s),
});
const lesson = new Lesson({ onExchange: (x) => views.add(x) });

// ---------------------------------------------------------------- state
function applyState(s) {
  state = s;
  $("#scenario").textContent = s.scenario ? `· ${s.scenario}` : "";
  const ringLayout = s.layout === "ring";
  $("#stage").dataset.layout = ringLayout ? "ring" : "lanes";
  $("#ring-wrap").hidden = !ringLayout;
  player.catchUp = ringLayout ? CATCH_UP.ring : CATCH_UP.lanes;
  if (ringLayout) {
    ring.setBureaus(s.bureaus ?? []);
    const known = new Set(s.bureaus ?? []);
    picked = picked.filter((c) => known.has(c));
    if (!picked.length) picked = (s.lanes ?? []).slice(0, MAX_PICKED);
    setPicked(picked);
  } else {
    diagram.setLanes(s.lanes?.length ? s.lanes : s.bureaus ?? []);
  }
  serverDropped = s.dropped ?? serverDropped;
  controls.setState(s);
  lesson.setSteps(s.lesson?.steps ?? []);
  setBureaus({ faults: s.faults ?? [], down: s.down ?? [] });
}

function setBureaus(b) {
  faults = { faults: b.faults ?? [], down: b.down ?? [] };
  eventStatus = {};
  showStatus();
  controls.showFaults(faults);
}

function showStatus() {
  const status = { ...laneStatus(faults.faults, faults.down), ...eventStatus };
  for (const [k, v] of Object.entries(status)) if (!v) delete status[k];
  diagram.setStatus(status);
  ring.setStatus(status);
}

function setPicked(codes) {
  picked = codes.slice(0, MAX_PICKED);
  diagram.setLanes(picked);
  ring.setPicked(picked);
  $("#picker-codes").value = picked.join(" ");
}

function togglePick(code) {
  setPicked(picked.includes(code) ? picked.filter((c) => c !== code) : [...picked, code]);
}

$("#picker").addEventListener("submit", (e) => {
  e.preventDefault();
  const codes = $("#picker-codes").value.toUpperCase().split(/[\s,;]+/).filter(Boolean);
  const known = new Set(state?.bureaus ?? []);
  const unknown = codes.filter((c) => !known.has(c));
  if (unknown.length) say("error", `Not in this network: ${unknown.join(", ")}.`);
  const good = codes.filter((c) => known.has(c));
  if (codes.length > MAX_PICKED) say("info", `Lanes for the first ${MAX_PICKED} bureaus only.`);
  setPicked([...new Set(good)]);
});

// ---------------------------------------------------------------- stream
function onEvents(events) {
  stats.events += events.length;
  const sorted = [...events].sort((a, b) => (a.time ?? 0) - (b.time ?? 0));
  const ringOn = state?.layout === "ring";
  const specs = [];
  let statusChanged = false;
  for (const e of sorted) {
    if (ringOn) ring.add(ringFor(e));
    statusChanged = noteStatus(e) || statusChanged;
    for (const spec of arrowsFor(e)) if (diagram.canDraw(spec)) specs.push(spec);
  }
  reorder.add(specs);
  if (statusChanged) showStatus();
}

/** Fault and process events mark a lane before the server's next "bureaus" message. */
function noteStatus(e) {
  const v = e.view ?? {};
  if (e.kind === "fault.applied" && v.target) {
    eventStatus[v.target] = faultLabel(v.fault);
    return true;
  }
  if (e.kind === "fault.healed" && v.target) {
    eventStatus[v.target] = "";
    return true;
  }
  if ((e.kind === "process.stopped" || e.kind === "process.started") &&
      ["node", "host"].includes(v.role)) {
    const codes = v.bureaus ? String(v.bureaus).split(",") : [bureauOf(e.party)];
    for (const c of codes) if (c && c !== GATEWAY) {
      eventStatus[c.trim()] = e.kind === "process.stopped" ? "DOWN" : "";
    }
    return true;
  }
  return false;
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      applyState(msg.state ?? {});
      break;
    case "events":
      if (typeof msg.dropped === "number") serverDropped = msg.dropped;
      onEvents(msg.events ?? []);
      break;
    case "exchange": {
      const { type: _type, ...x } = msg;
      views.add(x);
      break;
    }
    case "status":
      say(msg.level, msg.text ?? "");
      break;
    case "bureaus":
      setBureaus(msg);
      break;
    case "lesson":
      lesson.update(msg);
      break;
    case "notices":
      controls.setNotices(msg.notices ?? []);
      break;
    default:
      console.warn("classroom stream: unknown message type", msg.type);
  }
  showPlayer();
}

const stream = new Stream("/api/stream", {
  onMessage,
  onState: (s) => {
    const conn = $("#conn");
    conn.dataset.state = s;
    conn.textContent = s === "open" ? "live" : "reconnecting…";
  },
});

// ---------------------------------------------------------------- playback
function showPlayer() {
  const pause = $("#pause");
  pause.setAttribute("aria-pressed", String(player.paused));
  pause.firstChild.textContent = player.paused ? "Resume " : "Pause ";
  $("#pace").value = player.pace;
  const info = $("#queue-info");
  info.dataset.queued = player.queue.length;
  info.dataset.dropped = player.dropped;
  info.textContent = `queued ${player.queue.length}` +
    (player.dropped ? ` · dropped ${player.dropped}` : "");
  stats.queued = player.queue.length;
  stats.rows = diagram.count();
}

function replay() {
  const x = views.current();
  if (!x) return say("info", "Nothing to replay yet: send a query first.");
  const rows = diagram.rowsOf([x.message_id], x.correlation_id);
  if (!rows.length) return say("info", "That exchange's arrows have left the diagram.");
  player.replay(rows);
}

function back() {
  player.back();
  const last = diagram.rows.lastElementChild;
  if (!last || !views.selectByMessage(last.dataset.message, last.dataset.correlation)) {
    views.selectPrevious();
  }
}

$("#pause").addEventListener("click", () => player.toggle());
$("#step").addEventListener("click", () => player.step());
$("#back").addEventListener("click", back);
$("#replay").addEventListener("click", replay);
$("#pace").addEventListener("change", (e) => player.setPace(e.target.value));

installKeys({
  pause: () => player.toggle(),
  step: () => player.step(),
  back,
  replay,
  pace: (p) => player.setPace(p),
  view: (v) => views.show(v),
  cycle: () => views.cycle(),
  lesson: () => lesson.next(),
});

// ---------------------------------------------------------------- stats
let frames = [];
function count(now) {
  frames.push(now);
  while (frames.length && frames[0] <= now - 1000) frames.shift();
  stats.fps = frames.length;
  stats.arrows = player.drawn + ring.drawn;
  stats.dropped = serverDropped + player.dropped;
  stats.lag_ms = player.lagMs;
  requestAnimationFrame(count);
}
requestAnimationFrame(count);

// ---------------------------------------------------------------- start
async function start() {
  try {
    applyState(await getJson("/api/state"));
  } catch (err) {
    say("error", err.message);
  }
  stream.open();
}
start();
