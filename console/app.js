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

const $ = (sel) => document.querySelector(sel);
const session = {
  get token() { return sessionStorage.getItem("tc.token"); },
  get project() { return sessionStorage.getItem("tc.project"); },
  get user() { return sessionStorage.getItem("tc.user"); },
  set(token, project, user) {
    sessionStorage.setItem("tc.token", token);
    sessionStorage.setItem("tc.project", project);
    sessionStorage.setItem("tc.user", user);
  },
  clear() { sessionStorage.clear(); },
};

/// One API call; the error body's error_msg and advice become the message.
async function api(method, path, body, headers = {}) {
  const h = Object.assign({}, headers);
  if (session.token) h["X-Auth-Token"] = session.token;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
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
  session.set(r.headers.get("X-Subject-Token"), project, user);
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
  load(true);
}

function goPage(delta) {
  const p = viewParams();
  const page = Math.max(1, (parseInt(p.get("page_num") || "1", 10) || 1) + delta);
  p.set("page_num", String(page));
  navigate(p);
}

async function load(fresh) {
  const p = viewParams();
  const q = listQuery(p);
  const headers = {};
  if (!fresh && q === lastQuery && lastEtag) headers["If-None-Match"] = lastEtag;
  const r = await api("GET", `/v2/${encodeURIComponent(session.project)}/batch-tasks?${q}`, undefined, headers);
  if (r.status === 304) return;
  if (r.status !== 200) {
    $("#list-error").textContent = describe(r);
    return;
  }
  $("#list-error").textContent = "";
  lastQuery = q;
  lastEtag = r.headers.get("ETag");
  lastPage = r.json;
  render(p, r.json);
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
    pick.setAttribute("aria-label", `Select ${b.batch_task_name}`);
    const c = el("td");
    c.appendChild(pick);
    tr.append(c, el("td", b.batch_task_name, "name"), el("td", b.video_source_name || ""),
      el("td", b.company), el("td", b.alg_name), el("td", b.video_group_name || ""),
      el("td", b.type), el("td", b.priority), el("td", b.num_task),
      el("td", new Date(b.created_at).toISOString().replace("T", " ").slice(0, 19)),
      stateBar(b.batch_task_status_info || {}));
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
}

async function act(action) {
  const ids = Array.from(document.querySelectorAll("#batches tbody input:checked")).map((i) => i.value);
  if (!ids.length) {
    $("#action-result").textContent = "Select one or more batch tasks first.";
    return;
  }
  if (!confirm(`${action} ${ids.length} batch task(s)?`)) return;
  const lines = [];
  for (const id of ids) {
    const path = `/v2/${encodeURIComponent(session.project)}/batch-tasks/${encodeURIComponent(id)}`;
    const r = action === "delete" ? await api("DELETE", path)
      : await api("PUT", `${path}/action/${action}`);
    if (r.status >= 300) {
      lines.push(`${id}: ${describe(r)}`);
    } else {
      const b = r.json || {};
      const refused = (b.error_list || []).join("; ");
      lines.push(`${id}: ${b.succeed_count ?? "?"} of ${b.total_count ?? "?"} tasks${refused ? `; refused: ${refused}` : ""}`);
    }
  }
  $("#action-result").textContent = lines.join("\n");
  load(true);
}

async function loadGroups() {
  const r = await api("GET", `/v2/${encodeURIComponent(session.project)}/video-group/groups?is_paged=false`);
  const sel = $("#f-groups");
  sel.replaceChildren();
  for (const g of (r.json && r.json.video_group_list) || []) {
    const o = el("option", g.video_group_name);
    o.value = g.video_group_id;
    sel.appendChild(o);
  }
}

// ---- the page ----

async function route() {
  clearInterval(timer);
  const signedIn = Boolean(session.token);
  $("#signin-view").hidden = signedIn;
  $("#batches-view").hidden = !signedIn;
  $("#signout").hidden = !signedIn;
  $("#who").textContent = signedIn ? `${session.user} in project ${session.project}` : "";
  if (!signedIn) return;
  await loadGroups();
  fillFilters(viewParams());
  await load(true);
  timer = setInterval(() => load(false), POLL_MS);
}

function setup() {
  const states = $("#f-states"), legend = $("#legend");
  for (const s of STATES) {
    const o = el("option", s);
    o.value = s;
    states.appendChild(o);
    const li = el("li");
    li.append(el("span", null, `swatch s-${s}`), el("span", s));
    legend.appendChild(li);
  }
  $("#signin").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  $("#filters").addEventListener("submit", applyFilters);
  $("#prev").addEventListener("click", () => goPage(-1));
  $("#next").addEventListener("click", () => goPage(1));
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => act(b.dataset.action));
  }
  window.addEventListener("popstate", () => { fillFilters(viewParams()); load(true); });
  route();
}

document.addEventListener("DOMContentLoaded", setup);
