// Flow's web UI: hash routes over the REST API (/api/v1). No framework.
"use strict";

const main = document.getElementById("main");
let timer = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function st(s) { return `<span class="st st-${esc(s)}">${esc(s || "—")}</span>`; }
function ms(n) { return n >= 1000 ? (n / 1000).toFixed(2) + " s" : n + " ms"; }
function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function when(t) { return t ? new Date(t).toLocaleString() : "—"; }

async function api(path, opts) {
  const r = await fetch("/api/v1" + path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function route() {
  clearInterval(timer);
  const h = location.hash.replace(/^#/, "") || "/";
  let m;
  let page;
  if ((m = h.match(/^\/jobs\/([^/]+)\/checkpoints\/(\d+)$/))) page = () => checkpointPage(m[1], m[2]);
  else if ((m = h.match(/^\/jobs\/([^/]+)\/checkpoints$/))) page = () => checkpointsPage(m[1]);
  else if ((m = h.match(/^\/jobs\/([^/]+)$/))) page = () => jobPage(m[1]);
  else page = overviewPage;
  const run = () => page().then(() => {
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }).catch(e => { main.innerHTML = `<p class="st st-FAILED" id="error">${esc(e.message)}</p>`; });
  run();
  timer = setInterval(run, 2000);
}
window.addEventListener("hashchange", route);

async function overviewPage() {
  const [ov, jobs, tms] = await Promise.all([api("/overview"), api("/jobs"), api("/taskmanagers")]);
  const card = (label, n, id) => `<div class="card" id="${id}"><div class="muted">${label}</div><div class="n">${n}</div></div>`;
  main.innerHTML = `<h1>Cluster</h1>
  <div class="cards">
    ${card("Running jobs", ov.jobs.by_status.RUNNING || 0, "card-running")}
    ${card("Jobs", ov.jobs.total, "card-jobs")}
    ${card("TaskManagers", ov.taskmanagers.total, "card-tms")}
    ${card("Slots free / total", `${ov.slots.free} / ${ov.slots.total}`, "card-slots")}
  </div>
  <h2>Jobs</h2>
  <table id="jobs"><tr><th>Name</th><th>Id</th><th>Status</th><th>Attempt</th><th>Submitted</th></tr>
  ${(jobs.jobs || []).map(j => `<tr class="clickable job" data-href="#/jobs/${esc(j.job_id)}">
    <td><a href="#/jobs/${esc(j.job_id)}">${esc(j.name)}</a></td><td class="muted">${esc(j.job_id)}</td>
    <td>${st(j.status)}</td><td>${j.attempt}</td><td>${when(j.submit_time)}</td></tr>`).join("")}
  </table>
  <h2>TaskManagers</h2>
  <table id="taskmanagers"><tr><th>Id</th><th>Address</th><th>State</th><th>Slots (free)</th><th>Last heartbeat</th></tr>
  ${(tms.task_managers || []).map(t => `<tr class="taskmanager"><td>${esc(t.id)}</td><td>${esc(t.address)}</td>
    <td>${st(t.state)}</td><td>${t.slots} (${t.free_slots})</td><td>${when(t.last_heartbeat)}</td></tr>`).join("")}
  </table>`;
  main.querySelectorAll("tr.clickable").forEach(tr => tr.onclick = () => { location.hash = tr.dataset.href; });
}

function rate(n) {
  if (!n) return "0/s";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M/s";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k/s";
  return n.toFixed(n < 10 ? 1 : 0) + "/s";
}
// An event-time watermark as a UTC time (null: none yet).
function wmText(t, end) {
  if (end) return "end of stream";
  if (!t) return "none";
  return new Date(t).toISOString().replace("T", " ").replace("Z", " UTC");
}
function pct(r) { return Math.round(100 * (r || 0)) + "%"; }

async function jobPage(id) {
  const [j, vs] = await Promise.all([api("/jobs/" + encodeURIComponent(id)),
    api(`/jobs/${encodeURIComponent(id)}/vertices`).catch(() => null)]);
  const s = j.summary;
  const stats = {};
  for (const v of (vs && vs.vertices) || []) stats[v.id] = v;
  const vstat = t => {
    const v = stats[t.id];
    if (!v || !v.sampled_subtasks) return `<div class="vstats muted">no samples yet</div>`;
    const lv = (v.level || "").toLowerCase();
    return `<div class="vstats">
      <div class="rate">in ${rate(v.records_in_per_second)} · out ${rate(v.records_out_per_second)}</div>
      <div class="bp bp-${esc(lv)}" title="max over subtasks: busy ${pct(v.busy_ratio)}, idle ${pct(v.idle_ratio)}, backpressured ${pct(v.backpressured_ratio)}">backpressure <b>${esc(v.level)}</b> ${pct(v.backpressured_ratio)}</div>
      <div class="wm" data-watermark="${esc(v.watermark_time || "")}">watermark ${esc(wmText(v.watermark_time, v.watermark_end_of_stream))}</div></div>`;
  };
  const vertices = (j.tasks || []).map(t => {
    const v = stats[t.id];
    const lv = v && v.sampled_subtasks ? (v.level || "").toLowerCase() : "none";
    return `<div class="vertex vertex-bp-${esc(lv)}" data-task="${esc(t.id)}" data-level="${esc(v ? v.level : "")}">
      <div class="ops">${esc((t.operators || [t.id]).join(" → "))}</div>
      <div class="muted">task ${esc(t.id)} · parallelism ${t.parallelism}</div>
      ${vstat(t)}
      <div class="subs">${(t.subtasks || []).map(x => `<span class="sub s-${esc(x.state)}" title="subtask ${x.index}: ${esc(x.state)} on ${esc(x.task_manager_id)}"></span>`).join("")}</div>
    </div>`;
  }).join(`<div class="arrow">→</div>`);
  const subStat = (t, x) => {
    const v = stats[t.id];
    const ss = v && (v.subtasks || []).find(y => y.subtask === x.index);
    if (!ss || !ss.sampled) return `<td class="muted">—</td><td class="muted">—</td><td class="muted">—</td>`;
    return `<td>${rate(ss.records_in_per_second)} / ${rate(ss.records_out_per_second)}</td>
      <td><span class="bp bp-${esc((ss.level || "").toLowerCase())}">${esc(ss.level)}</span> ${pct(ss.busy_ratio)} / ${pct(ss.idle_ratio)} / ${pct(ss.backpressured_ratio)}</td>
      <td>${esc(wmText(ss.watermark_time, ss.watermark_end_of_stream))}</td>`;
  };
  const failures = (j.history || []).filter(h => h.status === "FAILING" || h.status === "FAILED" || h.status === "RESTARTING");
  main.innerHTML = `<h1>${esc(s.name)} ${st(s.status)}</h1>
  <div class="muted">${esc(s.job_id)} · attempt ${s.attempt} · submitted ${when(s.submit_time)}</div>
  <div class="buttons">
    <a href="#/jobs/${esc(id)}/checkpoints"><button id="checkpoints-link">Checkpoints</button></a>
    <button id="savepoint">Savepoint</button><button id="stop">Stop with savepoint</button>
    <button id="cancel" class="danger">Cancel</button>
  </div>
  <div id="msg" class="muted"></div>
  <h2>Graph</h2><div class="muted">records/s, busy/idle/backpressured ratios and levels (OK ≤ 10% backpressured, LOW ≤ 50%, HIGH above) over the last ${vs ? Math.round(vs.window_ms / 1000) : "—"} s of heartbeat samples</div>
  <div class="graph" id="graph">${vertices}</div>
  <h2>Subtasks</h2>
  <table id="subtasks"><tr><th>Task</th><th>Subtask</th><th>State</th><th>TaskManager</th><th>Records in / out</th><th>Backpressure · busy / idle / backpressured</th><th>Watermark</th><th>Failure</th></tr>
  ${(j.tasks || []).flatMap(t => (t.subtasks || []).map(x => `<tr><td>${esc(t.id)}</td><td>${x.index}</td>
    <td>${st(x.state)}</td><td>${esc(x.task_manager_id)}</td>${subStat(t, x)}<td>${esc(x.failure)}</td></tr>`)).join("")}
  </table>
  <h2>Exceptions</h2>
  ${failures.length ? `<table id="exceptions"><tr><th>Time</th><th>Status</th><th>Message</th></tr>${failures.map(h =>
    `<tr><td>${when(h.time)}</td><td>${st(h.status)}</td><td>${esc(h.message)}</td></tr>`).join("")}</table>` : `<p class="muted" id="exceptions">none</p>`}
  <h2>History</h2>
  <table id="history"><tr><th>Time</th><th>Status</th><th>Message</th></tr>${(j.history || []).map(h =>
    `<tr><td>${when(h.time)}</td><td>${st(h.status)}</td><td>${esc(h.message)}</td></tr>`).join("")}</table>
  <h2>Configuration</h2><pre id="config">${esc(JSON.stringify(j.graph, null, 2))}</pre>`;
  const act = (btn, path, what, confirmText) => {
    document.getElementById(btn).onclick = async () => {
      if (confirmText && !confirm(confirmText)) return;
      const msg = document.getElementById("msg");
      try {
        const r = await api(`/jobs/${encodeURIComponent(id)}${path}`, {method: "POST"});
        msg.textContent = r.trigger_id ? `${what}: trigger ${r.trigger_id}` : `${what}: requested`;
        if (r.trigger_id) pollTrigger(id, r.trigger_id, what);
      } catch (e) { msg.textContent = `${what}: ${e.message}`; }
    };
  };
  act("savepoint", "/savepoints", "savepoint");
  act("stop", "/stop", "stop with savepoint", "Stop the job with a savepoint?");
  act("cancel", "/cancel", "cancel", "Cancel the job?");
}

async function pollTrigger(id, tid, what) {
  for (let i = 0; i < 300; i++) {
    const s = await api(`/jobs/${encodeURIComponent(id)}/savepoints/${tid}`).catch(() => null);
    const msg = document.getElementById("msg");
    if (s && msg) {
      if (s.status === "COMPLETED") { msg.textContent = `${what}: ${s.progress.path}`; return; }
      if (s.status === "FAILED") { msg.textContent = `${what} failed: ${s.failure}`; return; }
      msg.textContent = `${what}: ${s.progress.acknowledged}/${s.progress.total} subtasks acknowledged`;
    }
    await new Promise(r => setTimeout(r, 500));
  }
}

async function checkpointsPage(id) {
  const c = await api(`/jobs/${encodeURIComponent(id)}/checkpoints`);
  const counts = Object.entries(c.counts || {}).map(([k, v]) => `${st(k)} ${v}`).join(" · ");
  main.innerHTML = `<h1><a href="#/jobs/${esc(id)}">Job</a> › Checkpoints</h1>
  <div class="cards">
    <div class="card"><div class="muted">Counts</div><div>${counts || "none yet"}</div></div>
    <div class="card"><div class="muted">Duration p50 / p90 / p99</div><div class="n">${ms(c.duration_ms_p50)} / ${ms(c.duration_ms_p90)} / ${ms(c.duration_ms_p99)}</div></div>
    <div class="card"><div class="muted">Latest completed</div><div class="n">${c.latest_completed_id || "—"}</div><div class="muted">${esc(c.latest_completed_path)}</div></div>
  </div>
  <h2>History</h2>
  <table id="checkpoints"><tr><th>Id</th><th>Status</th><th>Kind</th><th>Triggered</th><th>Duration</th><th>State size</th><th>Uploaded</th><th>Max alignment</th><th>Failure</th></tr>
  ${(c.checkpoints || []).map(k => `<tr class="clickable checkpoint" data-href="#/jobs/${esc(id)}/checkpoints/${k.id}">
    <td><a href="#/jobs/${esc(id)}/checkpoints/${k.id}">${k.id}</a></td><td>${st(k.status)}</td><td>${k.savepoint ? "savepoint" : "checkpoint"}</td>
    <td>${when(k.trigger_time)}</td><td>${ms(k.duration_ms)}</td><td>${bytes(k.state_size)}</td><td>${bytes(k.uploaded_size)}</td>
    <td>${ms(k.max_alignment_ms)}</td><td>${esc(k.failure)}</td></tr>`).join("")}
  </table>`;
  main.querySelectorAll("tr.clickable").forEach(tr => tr.onclick = () => { location.hash = tr.dataset.href; });
}

async function checkpointPage(id, cid) {
  clearInterval(timer); // a checkpoint does not change once it ended
  const k = await api(`/jobs/${encodeURIComponent(id)}/checkpoints/${cid}`);
  const t0 = Date.parse(k.trigger_time);
  const rows = (k.tasks || []).map(t => {
    const total = Math.max(0, Date.parse(t.ack_time) - t0);
    const work = t.alignment_ms + t.sync_ms + t.async_ms;
    return {t, total, wait: Math.max(0, total - work)};
  }).sort((a, b) => a.t.task.localeCompare(b.t.task) || a.t.subtask - b.t.subtask);
  const span = Math.max(1, ...rows.map(r => r.total));
  const pct = n => (100 * n / span).toFixed(2) + "%";
  const seg = (cls, from, len, title) => len > 0 ? `<div class="seg ${cls}" style="left:${pct(from)};width:${pct(len)}" title="${title}"></div>` : "";
  main.innerHTML = `<h1><a href="#/jobs/${esc(id)}">Job</a> › <a href="#/jobs/${esc(id)}/checkpoints">Checkpoints</a> › ${k.id} ${st(k.status)}</h1>
  <div class="muted">triggered ${when(k.trigger_time)} · ${ms(k.duration_ms)} · state ${bytes(k.state_size)} · uploaded ${bytes(k.uploaded_size)} · attempt ${k.attempt}</div>
  <h2>Timeline per subtask</h2>
  <div class="legend"><span><i class="seg wait" style="position:static"></i>trigger → barrier</span><span><i class="seg align" style="position:static"></i>alignment</span>
    <span><i class="seg sync" style="position:static"></i>sync snapshot</span><span><i class="seg async" style="position:static"></i>async upload → ack</span></div>
  <div class="timeline" id="timeline">${rows.map(({t, total, wait}) => `<div class="tl-row subtask" data-subtask="${esc(t.task)}/${t.subtask}">
      <div>${esc(t.task)} / ${t.subtask}</div>
      <div class="tl-bar">${seg("wait", 0, wait, "trigger → barrier " + ms(wait))}${seg("align", wait, t.alignment_ms, "alignment " + ms(t.alignment_ms))}${seg("sync", wait + t.alignment_ms, t.sync_ms, "sync " + ms(t.sync_ms))}${seg("async", wait + t.alignment_ms + t.sync_ms, t.async_ms, "async " + ms(t.async_ms))}</div>
      <div class="muted">${ms(total)}</div></div>`).join("")}</div>
  <h2>Subtasks</h2>
  <table id="ck-subtasks"><tr><th>Task</th><th>Subtask</th><th>Acknowledged</th><th>Trigger → barrier</th><th>Alignment</th><th>Sync</th><th>Async</th><th>State</th><th>Uploaded</th></tr>
  ${rows.map(({t, total, wait}) => `<tr><td>${esc(t.task)}</td><td>${t.subtask}</td><td>+${ms(total)}</td><td>${ms(wait)}</td>
    <td>${ms(t.alignment_ms)}</td><td>${ms(t.sync_ms)}</td><td>${ms(t.async_ms)}</td><td>${bytes(t.state_size)}</td><td>${bytes(t.uploaded_size)}</td></tr>`).join("")}
  </table>`;
}

route();
