// The taskcenter console: a small client on the same JSON API every client
// uses. Every name is rendered as text (textContent), never as markup; the
// token lives in sessionStorage, never in a URL; the whole list view lives in
// the URL, so a link, a reload or the back button shows the same page.
"use strict";

const STATES = [
  "pending", "scheduling", "starting", "running", "upgrading", "recovering",
  "stopping", "stopped", "stopped_no_service", "lack_of_resources",
  "create_failed", "start_failed", "abnormal", "failed", "succeeded",
  "deleting", "freezing", "frozen",
];
const LIST_KEYS = ["video_group", "task_state", "manufacturer", "title", "name_like",
  "type_like", "sort_name", "order_by", "page_size", "page_num"];
const POLL_MS = 1000;
const VIEWS = ["batches", "new", "tasks", "catalogue", "capacity"];

const $ = (sel) => document.querySelector(sel);

// The batch ids the operator ticked on the list page shown. The list
// redraws itself as counts change, so the ticks live here, not only in the
// checkboxes: a redraw between a tick and "Stop selected" must not drop
// them. A selection belongs to one signed-in page: another page, filter,
// project or user starts with none.
const chosenBatches = new Set();
let chosenOn = null;

const session = {
  get token() { return sessionStorage.getItem("tc.token"); },
  get project() { return sessionStorage.getItem("tc.project"); },
  get user() { return sessionStorage.getItem("tc.user"); },
  set(token, project, user) {
    sessionStorage.setItem("tc.token", token);
    sessionStorage.setItem("tc.project", project);
    sessionStorage.setItem("tc.user", user);
    chosenBatches.clear();
  },
  clear() { sessionStorage.clear(); chosenBatches.clear(); },
};

/// One API call; the error body's error_msg and advice become the message.
async function api(method, path, body, headers = {}, signal = undefined) {
  const h = Object.assign({}, headers);
  if (session.token) h["X-Auth-Token"] = session.token;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal,
  });
  let json = null;
  if (resp.status !== 204 && resp.status !== 304) {
    try { json = await resp.json(); } catch (_) { json = null; }
  }
  if (resp.status === 401 && session.token) {
    session.clear();
    route();
  }
  return { status: resp.status, headers: resp.headers, json };
}

let switching = false;
const proj = () => `/v2/${encodeURIComponent(session.project)}`;
const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);

function describe(r) {
  const b = r.json || {};
  return b.error_msg ? `${b.error_msg} ${b.detail || ""} ${b.advice || ""}`.trim()
    : `The server answered ${r.status}.`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// ---- sign in and out ----

async function signIn(ev) {
  ev.preventDefault();
  const f = ev.target;
  const previous = session.token;
  const user = f.user.value, project = f.project.value;
  $("#signin-error").textContent = "";
  const r = await api("POST", "/v3/auth/tokens", {
    auth: {
      identity: { methods: ["password"], password: { user: { name: user, password: f.password.value, domain: { name: "default" } } } },
      scope: { project: { id: project } },
    },
  });
  f.password.value = "";
  if (r.status !== 201) {
    $("#signin-error").textContent = describe(r);
    return;
  }
  // Switching projects: the new token replaces the old, which is revoked.
  if (previous) await api("DELETE", "/v3/auth/tokens", undefined, { "X-Subject-Token": previous });
  session.set(r.headers.get("X-Subject-Token"), project, user);
  switching = false;
  history.pushState(null, "", "/console/");
  route();
}

async function signOut() {
  const token = session.token;
  if (token) await api("DELETE", "/v3/auth/tokens", undefined, { "X-Subject-Token": token });
  session.clear();
  history.pushState(null, "", "/console/");
  route();
}

// ---- the batch-task list ----

let lastQuery = null, lastEtag = null, lastPage = null, timer = null;

function viewParams() {
  const u = new URLSearchParams(location.search);
  const p = new URLSearchParams();
  for (const k of LIST_KEYS) {
    const v = u.get(k);
    if (v) p.set(k, v);
  }
  return p;
}

function listQuery(p) {
  const q = new URLSearchParams(p);
  if (!q.get("name_like")) { q.delete("name_like"); q.delete("type_like"); }
  q.set("is_paged", "true");
  if (!q.get("page_size")) q.set("page_size", "10");
  if (!q.get("page_num")) q.set("page_num", "1");
  return q.toString();
}

function fillFilters(p) {
  const f = $("#filters");
  const multi = (sel, values) => {
    for (const o of sel.options) o.selected = values.includes(o.value);
  };
  multi(f.video_group, (p.get("video_group") || "").split(",").filter(Boolean));
  multi(f.task_state, (p.get("task_state") || "").split(",").filter(Boolean));
  for (const k of ["manufacturer", "title", "name_like"]) f[k].value = p.get(k) || "";
  f.type_like.value = p.get("type_like") || "batch_task_name";
  f.sort_name.value = p.get("sort_name") || "created_at";
  f.order_by.value = p.get("order_by") || "desc";
  f.page_size.value = p.get("page_size") || "10";
}

function applyFilters(ev) {
  ev.preventDefault();
  const f = ev.target, p = new URLSearchParams();
  const picked = (sel) => Array.from(sel.selectedOptions).map((o) => o.value).join(",");
  if (picked(f.video_group)) p.set("video_group", picked(f.video_group));
  if (picked(f.task_state)) p.set("task_state", picked(f.task_state));
  for (const k of ["manufacturer", "title", "name_like"]) if (f[k].value.trim()) p.set(k, f[k].value.trim());
  if (p.get("name_like")) p.set("type_like", f.type_like.value);
  p.set("sort_name", f.sort_name.value);
  p.set("order_by", f.order_by.value);
  p.set("page_size", f.page_size.value);
  p.set("page_num", "1");
  navigate(p);
}

function navigate(p) {
  history.pushState(null, "", `/console/?${p.toString()}`);
  route();
}

function goPage(delta) {
  const p = viewParams();
  const page = Math.max(1, (parseInt(p.get("page_num") || "1", 10) || 1) + delta);
  p.set("page_num", String(page));
  navigate(p);
}

// The page shown, then a long poll for changes to it: the request carries
// the page's ETag and `Prefer: wait=20`, and the server answers when the
// page's content changes (200) or after 20 s (304). One watch at a time.
let watching = null;

function stopWatching() {
  if (watching) watching.abort();
  watching = null;
}

// Each load's number: an answer that comes back after a later load began
// is not shown (a slow page must not replace the one asked for since).
let loads = 0;

async function load() {
  stopWatching();
  const mine = ++loads;
  const p = viewParams();
  const q = listQuery(p);
  const r = await api("GET", `${proj()}/batch-tasks?${q}`);
  if (mine !== loads) return;
  if (r.status !== 200) {
    $("#list-error").textContent = describe(r);
    return;
  }
  $("#list-error").textContent = "";
  const shown = `${session.user} ${proj()}?${q}`;
  if (shown !== chosenOn) chosenBatches.clear();
  chosenOn = shown;
  lastQuery = q;
  lastEtag = r.headers.get("ETag");
  lastPage = r.json;
  render(p, r.json);
  watch(p, q);
}

async function watch(p, q) {
  const ctl = new AbortController();
  watching = ctl;
  while (!ctl.signal.aborted && lastEtag) {
    let r;
    try {
      r = await api("GET", `${proj()}/batch-tasks?${q}`, undefined,
        { "If-None-Match": lastEtag, "Prefer": "wait=20" }, ctl.signal);
    } catch (_) {
      if (ctl.signal.aborted) return;
      await new Promise((done) => setTimeout(done, POLL_MS));
      continue;
    }
    if (ctl.signal.aborted) return;
    if (r.status === 200) {
      lastEtag = r.headers.get("ETag");
      lastPage = r.json;
      render(p, r.json);
    } else if (r.status === 304) {
      lastEtag = r.headers.get("ETag") || lastEtag;
    } else {
      $("#list-error").textContent = describe(r);
      await new Promise((done) => setTimeout(done, POLL_MS));
    }
  }
}

function stateBar(info) {
  const bar = el("div", null, "states");
  const parts = [];
  for (const s of STATES) {
    const n = info[s] || 0;
    if (!n) continue;
    const seg = el("span", null, `seg s-${s}`);
    seg.style.flexGrow = String(n);
    seg.title = `${s}: ${n}`;
    bar.appendChild(seg);
    parts.push(`${s} ${n}`);
  }
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", parts.length ? parts.join(", ") : "no tasks");
  const text = el("span", parts.join(", "), "sr");
  const cell = el("td");
  cell.append(bar, text);
  return cell;
}

function render(p, page) {
  const tbody = $("#batches tbody");
  tbody.replaceChildren();
  const rows = page.batch_task_list || [];
  for (const b of rows) {
    const tr = el("tr");
    const pick = el("input");
    pick.type = "checkbox";
    pick.value = b.id;
    pick.checked = chosenBatches.has(b.id);
    pick.addEventListener("change", () => {
      if (pick.checked) chosenBatches.add(b.id); else chosenBatches.delete(b.id);
    });
    pick.setAttribute("aria-label", `Select ${b.batch_task_name}`);
    const c = el("td");
    c.appendChild(pick);
    const name = el("td", null, "name");
    const link = el("a", b.batch_task_name);
    link.href = `/console/?view=tasks&batch=${encodeURIComponent(b.id)}`;
    link.dataset.nav = "";
    name.appendChild(link);
    tr.dataset.id = b.id;
    tr.append(c, name, el("td", `${b.service_name || ""} ${b.service_version || ""}`.trim()),
      el("td", b.company), el("td", b.alg_name), el("td", b.video_group_name || ""),
      el("td", b.type === "1" ? "edge" : "cloud"), el("td", b.priority), el("td", b.num_task),
      el("td", when(b.created_at)), stateBar(b.batch_task_status_info || {}));
    tbody.appendChild(tr);
  }
  const size = parseInt(p.get("page_size") || "10", 10);
  const num = parseInt(p.get("page_num") || "1", 10);
  const pages = Math.max(1, Math.ceil(page.count / size));
  $("#total").textContent = `${page.count} batch tasks`;
  $("#pageinfo").textContent = `Page ${num} of ${pages}`;
  $("#prev").disabled = num <= 1;
  $("#next").disabled = num >= pages;
  $("#empty").hidden = rows.length > 0;
  if (!performance.getEntriesByName("rows-drawn").length) performance.mark("rows-drawn");
}

async function act(action) {
  const ids = Array.from(document.querySelectorAll("#batches tbody input:checked")).map((i) => i.value);
  if (!ids.length) {
    $("#action-result").textContent = "Select one or more batch tasks first.";
    return;
  }
  if (!confirm(`${action} ${ids.length} batch task(s)?`)) return;
  const lines = [];
  const nameOf = (id) => ((lastPage && lastPage.batch_task_list) || []).find((b) => b.id === id)?.batch_task_name || id;
  for (const id of ids) {
    const path = `${proj()}/batch-tasks/${encodeURIComponent(id)}`;
    const r = action === "delete" ? await api("DELETE", path)
      : await api("PUT", `${path}/action/${action}`);
    if (r.status >= 300) {
      lines.push(`${nameOf(id)}: ${describe(r)}`);
    } else {
      const b = r.json || {};
      // Done with it: the next action starts without it. One the server
      // refused, or whose every task it refused, stays ticked, to try again.
      if (!(b.succeed_count === 0 && (b.error_list || []).length)) {
        chosenBatches.delete(id);
        const box = Array.from(document.querySelectorAll("#batches tbody input[type=checkbox]"))
          .find((i) => i.value === id);
        if (box) box.checked = false;
      }
      const refused = (b.error_list || []).join("; ");
      lines.push(`${nameOf(id)}: ${b.succeed_count ?? "?"} of ${b.total_count ?? "?"} tasks${refused ? `; refused: ${refused}` : ""}`);
    }
  }
  $("#action-result").textContent = lines.join("\n");
  load();
}

async function loadGroups() {
  const r = await api("GET", `${proj()}/video-group/groups?is_paged=false`);
  const sel = $("#f-groups");
  sel.replaceChildren();
  for (const g of (r.json && r.json.video_group_list) || []) {
    const o = el("option", g.video_group_name);
    o.value = g.video_group_id;
    sel.appendChild(o);
  }
}

// ---- create a batch task ----

async function loadCreateForm() {
  const [svc, groups] = await Promise.all([
    api("GET", `${proj()}/algorithm/services/user?is_paged=false`),
    api("GET", `${proj()}/video-group/groups?is_paged=false`),
  ]);
  if (svc.status !== 200 || groups.status !== 200) {
    $("#create-error").textContent = describe(svc.status !== 200 ? svc : groups);
    return;
  }
  const sel = $("#c-service");
  sel.replaceChildren();
  const services = svc.json.service_list || [];
  for (const s of services) {
    const o = el("option", `${s.service_name} ${s.function_version} (${s.alg_name || ""}, ${s.company}, ${s.deploy_type}, ${s.alg_status})`);
    o.value = JSON.stringify([s.service_name, s.function_version]);
    sel.appendChild(o);
  }
  if (!services.length) {
    $("#create-error").textContent = "No algorithm service is registered in this project: an operator adds one with `taskcenter service add`.";
  }
  const box = $("#c-groups");
  box.replaceChildren();
  const list = groups.json.video_group_list || [];
  if (!list.length) box.appendChild(el("p", "No video group yet: create groups and sources in the Catalogue first."));
  for (const g of list) {
    const wrap = el("div", null, "group-pick");
    wrap.dataset.group = g.video_group_id;
    const label = el("label", null, "inline");
    const tick = el("input");
    tick.type = "checkbox";
    tick.name = "group";
    tick.value = g.video_group_id;
    label.append(tick, el("span", ` ${g.video_group_name} (${g.num_video_source} sources)`));
    const open = el("button", "Pick sources");
    open.type = "button";
    open.setAttribute("aria-expanded", "false");
    const sources = el("ul", null, "source-pick");
    sources.hidden = true;
    open.addEventListener("click", () => pickSources(g.video_group_id, sources, open, tick));
    wrap.append(label, open, sources);
    box.appendChild(wrap);
  }
}

async function pickSources(groupId, list, button, tick) {
  if (!list.hidden) {
    list.hidden = true;
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const r = await api("GET", `${proj()}/source/sources?is_paged=false&video_group_id=${encodeURIComponent(groupId)}`);
  if (r.status !== 200) {
    $("#create-error").textContent = describe(r);
    return;
  }
  list.replaceChildren();
  for (const s of r.json.video_source_list || []) {
    const li = el("li");
    li.dataset.source = s.video_source_id;
    const label = el("label", null, "inline");
    const box = el("input");
    box.type = "checkbox";
    box.name = "source";
    box.value = s.video_source_id;
    box.addEventListener("change", () => { if (box.checked) tick.checked = true; });
    label.append(box, el("span", ` ${s.video_source_name}`));
    li.append(label, el("span", "", "source-error"));
    list.appendChild(li);
  }
  list.hidden = false;
  button.setAttribute("aria-expanded", "true");
}

function parseConfig(text) {
  let v;
  try { v = JSON.parse(text || "{}"); } catch (e) { return { error: `Config is not JSON: ${e.message}` }; }
  if (v === null || typeof v !== "object" || Array.isArray(v)) return { error: "Config must be a JSON object, such as {\"common\": {}}." };
  return { value: v };
}

async function createBatch(ev) {
  ev.preventDefault();
  const f = ev.target;
  for (const e of document.querySelectorAll("#c-groups .source-error")) e.textContent = "";
  $("#create-error").textContent = "";
  $("#create-result").textContent = "";
  const config = parseConfig(f.config.value);
  $("#c-config-error").textContent = config.error || "";
  if (config.error) { f.config.focus(); return; }
  const groups = [];
  for (const wrap of document.querySelectorAll("#c-groups .group-pick")) {
    if (!wrap.querySelector("input[name=group]").checked) continue;
    const picked = Array.from(wrap.querySelectorAll("input[name=source]:checked")).map((b) => ({ video_source_id: b.value }));
    const g = { video_source_group_id: wrap.dataset.group };
    if (picked.length) g.video_source_list = picked;
    groups.push(g);
  }
  if (!groups.length) { $("#create-error").textContent = "Pick at least one video group."; return; }
  const output = {};
  if (f.event_center.checked) output.event_center = true;
  if (f.webhook.value.trim()) output.webhook = { url: f.webhook.value.trim(), headers: { "Content-Type": "application/json" } };
  if (!Object.keys(output).length) { $("#create-error").textContent = "Choose at least one output."; return; }
  const [service, version] = JSON.parse(f.service.value || "[]");
  const body = {
    name: f.name.value.trim(), service_name: service, service_version: version, priority: f.priority.value,
    batch_input: { video_source_group: groups }, config: config.value, output,
  };
  if (f.description.value.trim()) body.description = f.description.value.trim();
  const r = await api("POST", `${proj()}/batch-tasks`, body);
  if (r.status !== 200) { $("#create-error").textContent = describe(r); return; }
  const b = r.json;
  // Each refused source's error goes next to it (the entries read
  // `<video_source_id>: <code> <why>`).
  const unplaced = [];
  for (const line of b.error_list || []) {
    const at = line.indexOf(": ");
    const id = at > 0 ? line.slice(0, at) : "";
    const slot = id && document.querySelector(`#c-groups li[data-source="${CSS.escape(id)}"] .source-error`);
    if (slot) slot.textContent = ` ${line.slice(at + 2)}`;
    else unplaced.push(line);
  }
  const out = $("#create-result");
  out.replaceChildren(el("span", `Created ${body.name}: ${b.succeed_count} tasks, ${b.failed_count} sources refused. `));
  if (unplaced.length) out.appendChild(el("span", unplaced.join("; ") + " "));
  const link = el("a", "Show its tasks");
  link.href = `/console/?view=tasks&batch=${encodeURIComponent(b.id)}`;
  link.dataset.nav = "";
  out.appendChild(link);
}

// ---- a batch's tasks ----

const TASK_PAGE = 20;

function taskParams() {
  const u = new URLSearchParams(location.search);
  return { batch: u.get("batch") || "", state: u.get("state") || "", page: Math.max(1, parseInt(u.get("page") || "1", 10) || 1), task: u.get("task") || "" };
}

function taskUrl(t) {
  const p = new URLSearchParams({ view: "tasks", batch: t.batch });
  if (t.state) p.set("state", t.state);
  if (t.page > 1) p.set("page", String(t.page));
  if (t.task) p.set("task", t.task);
  return `/console/?${p}`;
}

async function loadTasks() {
  const t = taskParams();
  $("#t-state").value = t.state;
  const q = new URLSearchParams({ batch_id: t.batch, page: String(t.page), page_size: String(TASK_PAGE) });
  if (t.state) q.set("task_state", t.state);
  const r = await api("GET", `${proj()}/tasks?${q}`);
  if (r.status !== 200) { $("#tasks-error").textContent = describe(r); return; }
  $("#tasks-error").textContent = "";
  const tbody = $("#tasks tbody");
  tbody.replaceChildren();
  for (const k of r.json.tasks || []) {
    const tr = el("tr");
    tr.dataset.id = k.id;
    const name = el("td", null, "name");
    const link = el("a", k.name);
    link.href = taskUrl(Object.assign({}, t, { task: k.id }));
    link.dataset.nav = "";
    name.appendChild(link);
    const err = k.error ? `${k.error.code} ${k.error.message}` : "";
    const acts = el("td");
    for (const a of ["start", "stop", "delete"]) {
      const btn = el("button", a);
      btn.type = "button";
      btn.dataset.taskAction = a;
      btn.setAttribute("aria-label", `${a} ${k.name}`);
      btn.addEventListener("click", () => taskAct(k, a));
      acts.appendChild(btn);
    }
    const state = el("td", k.state.toLowerCase(), "state");
    state.prepend(el("span", null, `swatch s-${k.state.toLowerCase()}`));
    tr.append(name, el("td", k.video_source_name || ""), state, el("td", k.worker_name || ""),
      el("td", k.attempt), el("td", err), el("td", k.created_at.replace("T", " ").slice(0, 19)), acts);
    tbody.appendChild(tr);
  }
  const n = (r.json.tasks || []).length;
  // A batch's tasks carry its name.
  if (n) $("#tasks-title").textContent = `Tasks of ${r.json.tasks[0].name}`;
  $("#tasks-empty").hidden = n > 0;
  $("#t-pageinfo").textContent = `Page ${t.page}`;
  $("#t-prev").disabled = t.page <= 1;
  $("#t-next").disabled = n < TASK_PAGE;
  if (t.task) await loadTaskDetail(t.task); else $("#task-detail").hidden = true;
}

async function loadTaskDetail(id) {
  const r = await api("GET", `${proj()}/tasks/${encodeURIComponent(id)}`);
  if (r.status !== 200) { $("#tasks-error").textContent = describe(r); return; }
  const k = r.json;
  $("#task-detail-title").textContent = `${k.name}: ${k.state.toLowerCase()}${k.worker_name ? ` on ${k.worker_name}` : ""}, attempt ${k.attempt}`;
  const ol = $("#timeline");
  ol.replaceChildren();
  for (const h of k.history || []) {
    const li = el("li");
    li.append(el("time", when(h.at)), el("span", ` ${h.from.toLowerCase()} → ${h.event} → ${(h.to || h.from).toLowerCase()}${h.worker_id ? ` on ${h.worker_name || h.worker_id}` : ""}`));
    ol.appendChild(li);
  }
  $("#task-detail").hidden = false;
}

async function taskAct(k, action) {
  if (!confirm(`${action} task ${k.name}?`)) return;
  const path = `${proj()}/tasks/${encodeURIComponent(k.id)}`;
  const r = action === "delete" ? await api("DELETE", path) : await api("PUT", `${path}/action/${action}`);
  $("#task-action-result").textContent = r.status >= 300 ? `${k.name}: ${describe(r)}` : `${k.name}: ${action} accepted`;
  loadTasks();
}

// ---- catalogue ----

function actionButton(text, label, onClick) {
  const b = el("button", text);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

async function catalogueCall(method, path, body, done) {
  const r = await api(method, path, body);
  if (r.status >= 300) { $("#catalogue-error").textContent = describe(r); return false; }
  $("#catalogue-error").textContent = "";
  $("#catalogue-result").textContent = done;
  await loadCatalogue();
  return true;
}

async function loadCatalogue() {
  const [g, s, v] = await Promise.all([
    api("GET", `${proj()}/video-group/groups?is_paged=false`),
    api("GET", `${proj()}/source/sources?is_paged=false`),
    api("GET", `${proj()}/algorithm/services/user?is_paged=false`),
  ]);
  const bad = [g, s, v].find((r) => r.status !== 200);
  if (bad) { $("#catalogue-error").textContent = describe(bad); return; }
  const groups = g.json.video_group_list || [];
  const gbody = $("#groups tbody");
  gbody.replaceChildren();
  const pick = $("#s-groups");
  pick.replaceChildren();
  for (const x of groups) {
    const tr = el("tr");
    const acts = el("td");
    acts.append(
      actionButton("Edit", `Edit ${x.video_group_name}`, () => {
        const f = $("#group-form");
        f.id.value = x.video_group_id;
        f.name.value = x.video_group_name;
        f.access_type.value = x.access_type;
        f.access_type.disabled = true;
        f.querySelector("button[type=submit]").textContent = "Save group";
        $("#group-cancel").hidden = false;
        f.name.focus();
      }),
      actionButton("Delete", `Delete ${x.video_group_name}`, () => {
        if (confirm(`Delete group ${x.video_group_name}?`)) {
          catalogueCall("DELETE", `${proj()}/video-group/${encodeURIComponent(x.video_group_id)}`, undefined, `Deleted group ${x.video_group_name}.`);
        }
      }));
    tr.append(el("td", x.video_group_name), el("td", x.video_group_id), el("td", x.access_type),
      el("td", x.num_video_source), el("td", x.num_batch_task), acts);
    gbody.appendChild(tr);
    const o = el("option", x.video_group_name);
    o.value = x.video_group_id;
    pick.appendChild(o);
  }
  $("#groups-empty").hidden = groups.length > 0;

  const sources = s.json.video_source_list || [];
  const sbody = $("#sources tbody");
  sbody.replaceChildren();
  for (const x of sources) {
    const tr = el("tr");
    const acts = el("td");
    acts.append(
      actionButton("Edit", `Edit ${x.video_source_name}`, () => {
        const f = $("#source-form");
        f.id.value = x.video_source_id;
        f.name.value = x.video_source_name;
        f.url.value = x.stream_path || "";
        f.access_type.value = x.access_type;
        f.access_type.disabled = true;
        f.groups.disabled = true;
        f.querySelector("button[type=submit]").textContent = "Save source";
        $("#source-cancel").hidden = false;
        f.name.focus();
      }),
      actionButton("Delete", `Delete ${x.video_source_name}`, () => {
        if (confirm(`Delete source ${x.video_source_name}?`)) {
          catalogueCall("DELETE", `${proj()}/source/${encodeURIComponent(x.video_source_id)}`, undefined, `Deleted source ${x.video_source_name}.`);
        }
      }));
    tr.append(el("td", x.video_source_name), el("td", x.video_source_id), el("td", x.type), el("td", x.access_type),
      el("td", (x.video_packages || []).map((p) => p.video_group_name).join(", ")), el("td", x.stream_path || ""), acts);
    sbody.appendChild(tr);
  }
  $("#sources-empty").hidden = sources.length > 0;

  const services = v.json.service_list || [];
  const vbody = $("#services tbody");
  vbody.replaceChildren();
  for (const x of services) {
    const tr = el("tr");
    const acts = el("td");
    const alg = encodeURIComponent(x.alg_id);
    acts.append(
      actionButton("Deploy", `Deploy ${x.service_name} ${x.function_version}`, () =>
        catalogueCall("POST", `${proj()}/algorithm/${alg}/deploy`, { stream_count: 1 }, `Deployed ${x.service_name}.`)),
      actionButton("Undeploy", `Undeploy ${x.service_name} ${x.function_version}`, () => {
        if (confirm(`Undeploy ${x.service_name}? Its live tasks stop.`)) {
          catalogueCall("PUT", `${proj()}/algorithm/${alg}/deploy/stop`, undefined, `Undeployed ${x.service_name}.`);
        }
      }));
    tr.append(el("td", x.service_name), el("td", x.function_version), el("td", x.alg_name || ""), el("td", x.company),
      el("td", x.deploy_type), el("td", x.alg_status), acts);
    vbody.appendChild(tr);
  }
  $("#services-empty").hidden = services.length > 0;
}

function resetForm(f, submitText, cancel) {
  f.reset();
  f.id.value = "";
  for (const e of f.elements) e.disabled = false;
  f.querySelector("button[type=submit]").textContent = submitText;
  $(cancel).hidden = true;
}

async function saveGroup(ev) {
  ev.preventDefault();
  const f = ev.target;
  const id = f.id.value;
  if (id) {
    // UpdateVideoGroup takes the full member set: keep today's members.
    const m = await api("GET", `${proj()}/source/sources?is_paged=false&video_group_id=${encodeURIComponent(id)}`);
    if (m.status !== 200) { $("#catalogue-error").textContent = describe(m); return; }
    const body = { video_group_name: f.name.value.trim(), video_source_ids: (m.json.video_source_list || []).map((s) => s.video_source_id) };
    if (f.description.value.trim()) body.description = f.description.value.trim();
    if (await catalogueCall("PUT", `${proj()}/video-group/${encodeURIComponent(id)}`, body, `Saved group ${body.video_group_name}.`)) {
      resetForm(f, "Create group", "#group-cancel");
    }
    return;
  }
  const body = { video_group_name: f.name.value.trim(), access_type: f.access_type.value };
  if (f.description.value.trim()) body.description = f.description.value.trim();
  if (await catalogueCall("POST", `${proj()}/video-group`, body, `Created group ${body.video_group_name}.`)) f.reset();
}

async function saveSource(ev) {
  ev.preventDefault();
  const f = ev.target;
  const id = f.id.value;
  const url = f.url.value.trim();
  const typeConfig = `<type>URL</type><config><URL_ADDRESS>${url.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</URL_ADDRESS></config>`;
  if (id) {
    const body = { video_source_name: f.name.value.trim(), type_config: typeConfig };
    if (await catalogueCall("PUT", `${proj()}/source/${encodeURIComponent(id)}`, body, `Saved source ${body.video_source_name}.`)) {
      resetForm(f, "Create source", "#source-cancel");
    }
    return;
  }
  const body = { video_source_name: f.name.value.trim(), access_type: f.access_type.value, type: "url", type_config: typeConfig };
  const groups = Array.from(f.groups.selectedOptions).map((o) => o.value);
  if (groups.length) body.video_group_ids = groups;
  if (await catalogueCall("POST", `${proj()}/source`, body, `Created source ${body.video_source_name}.`)) f.reset();
}

// ---- capacity ----

async function loadCapacity() {
  const [w, p] = await Promise.all([api("GET", `${proj()}/workers`), api("GET", `${proj()}/edge-pools?is_paged=false`)]);
  const bad = [w, p].find((r) => r.status !== 200);
  if (bad) { $("#capacity-error").textContent = describe(bad); return; }
  $("#capacity-error").textContent = "";
  const wbody = $("#workers tbody");
  wbody.replaceChildren();
  for (const x of w.json.workers || []) {
    const tr = el("tr");
    tr.append(el("td", x.name), el("td", x.id), el("td", x.type), el("td", x.pool || ""),
      el("td", `${x.held} of ${x.slots}`), el("td", x.state, `worker-${x.state}`));
    wbody.appendChild(tr);
  }
  $("#workers-empty").hidden = (w.json.workers || []).length > 0;
  const pbody = $("#pools tbody");
  pbody.replaceChildren();
  for (const x of p.json.edge_pools || []) {
    const tr = el("tr");
    const acts = el("td");
    acts.appendChild(actionButton("Delete", `Delete pool ${x.name}`, async () => {
      if (!confirm(`Delete pool ${x.name}?`)) return;
      const r = await api("DELETE", `${proj()}/edge-pools/${encodeURIComponent(x.id)}`);
      $("#capacity-error").textContent = r.status >= 300 ? describe(r) : "";
      loadCapacity();
    }));
    tr.append(el("td", x.name), el("td", x.id), el("td", x.state), el("td", x.description || ""), acts);
    pbody.appendChild(tr);
  }
  $("#pools-empty").hidden = (p.json.edge_pools || []).length > 0;
}

async function createPool(ev) {
  ev.preventDefault();
  const f = ev.target;
  const body = { name: f.name.value.trim(), nodes: f.nodes.value.split(",").map((n) => n.trim()).filter(Boolean) };
  if (f.description.value.trim()) body.description = f.description.value.trim();
  const r = await api("POST", `${proj()}/edge-pools`, body);
  $("#capacity-error").textContent = r.status >= 300 ? describe(r) : "";
  if (r.status < 300) f.reset();
  loadCapacity();
}

// ---- the page ----

function currentView() {
  const v = new URLSearchParams(location.search).get("view");
  return VIEWS.includes(v) ? v : "batches";
}

async function route() {
  clearInterval(timer);
  stopWatching();
  const signedIn = Boolean(session.token) && !switching;
  $("#signin-view").hidden = signedIn;
  $("#signin-title").textContent = switching ? "Switch project" : "Sign in";
  $("#switch-cancel").hidden = !switching;
  $("#nav").hidden = !signedIn;
  $("#signout").hidden = !signedIn;
  $("#switch").hidden = !signedIn;
  $("#who").textContent = session.token ? `${session.user} in project ${session.project}` : "";
  const view = currentView();
  for (const v of VIEWS) $(`#${v}-view`).hidden = !signedIn || v !== view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!signedIn) return;
  if (view === "batches") {
    // The groups (for the filter) and the page load side by side.
    fillFilters(viewParams());
    await Promise.all([loadGroups(), load()]);
    fillFilters(viewParams());
  } else if (view === "new") {
    await loadCreateForm();
  } else if (view === "tasks") {
    $("#tasks-title").textContent = "Tasks of the batch";
    await loadTasks();
    timer = setInterval(loadTasks, POLL_MS);
  } else if (view === "catalogue") {
    await loadCatalogue();
  } else {
    await loadCapacity();
    timer = setInterval(loadCapacity, 2 * POLL_MS);
  }
}

function setup() {
  const states = $("#f-states"), legend = $("#legend"), tstate = $("#t-state");
  for (const s of STATES) {
    const o = el("option", s);
    o.value = s;
    states.appendChild(o);
    const t = el("option", s);
    t.value = s.toUpperCase();
    tstate.appendChild(t);
    const li = el("li");
    li.append(el("span", null, `swatch s-${s}`), el("span", s));
    legend.appendChild(li);
  }
  $("#signin").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#switch").addEventListener("click", () => {
    switching = true;
    $("#signin").user.value = session.user || "";
    route();
    $("#signin").project.focus();
  });
  $("#switch-cancel").addEventListener("click", () => { switching = false; route(); });
  $("#filters").addEventListener("submit", applyFilters);
  $("#prev").addEventListener("click", () => goPage(-1));
  $("#next").addEventListener("click", () => goPage(1));
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => act(b.dataset.action));
  }
  $("#create").addEventListener("submit", createBatch);
  $("#task-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    history.pushState(null, "", taskUrl(Object.assign(taskParams(), { state: $("#t-state").value, page: 1, task: "" })));
    route();
  });
  const taskPage = (d) => {
    const t = taskParams();
    history.pushState(null, "", taskUrl(Object.assign(t, { page: Math.max(1, t.page + d), task: "" })));
    route();
  };
  $("#t-prev").addEventListener("click", () => taskPage(-1));
  $("#t-next").addEventListener("click", () => taskPage(1));
  $("#group-form").addEventListener("submit", saveGroup);
  $("#source-form").addEventListener("submit", saveSource);
  $("#group-cancel").addEventListener("click", () => resetForm($("#group-form"), "Create group", "#group-cancel"));
  $("#source-cancel").addEventListener("click", () => resetForm($("#source-form"), "Create source", "#source-cancel"));
  $("#pool-form").addEventListener("submit", createPool);
  // Links inside the console change the URL and the view without a reload.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[href^='/console/']");
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    history.pushState(null, "", a.getAttribute("href"));
    route();
  });
  window.addEventListener("popstate", route);
  route();
}

document.addEventListener("DOMContentLoaded", setup);
