// The portal: sign in with a pasted token (kept in this tab's sessionStorage only),
// launch the workspaces you may use, see and end your sessions.

const KEY = "broker.token";
const $ = (id) => document.getElementById(id);

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}` },
  });
  const body = await resp.json().catch(() => ({}));
  if (resp.status === 401) {
    signOut("Your sign-in has expired or is not valid. Paste a new token.");
    throw new Error(body.detail || "unauthorized");
  }
  if (!resp.ok) throw new Error(body.detail || `HTTP ${resp.status}`);
  return body;
}

function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function signOut(why = "") {
  sessionStorage.removeItem(KEY);
  document.body.dataset.state = "signed-out";
  $("sign-in").hidden = false;
  $("workspaces-section").hidden = true;
  $("sessions-section").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in-error").textContent = why;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function renderWorkspaces(list) {
  const ul = $("workspaces");
  ul.replaceChildren();
  for (const ws of list) {
    const li = document.createElement("li");
    li.className = "tile";
    li.dataset.workspace = ws.id;
    const name = document.createElement("strong");
    name.textContent = ws.name;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${ws.type.toUpperCase()} · ${ws.status === "in_use" ? "in use" : "available"}`;
    const desc = document.createElement("p");
    desc.textContent = ws.description;
    const button = document.createElement("button");
    button.textContent = "Launch";
    button.className = "launch";
    button.addEventListener("click", () => launch(ws, button));
    li.append(name, meta, desc, button);
    ul.append(li);
  }
}

function renderSessions(list) {
  const tbody = $("sessions");
  tbody.replaceChildren();
  for (const s of list) {
    const tr = document.createElement("tr");
    tr.dataset.session = s.id;
    tr.dataset.status = s.status;
    const started = new Date(s.started_at).toLocaleString();
    const status = cell(s.status);
    if (s.last_connect_error) {
      // Why the last try to reach the desktop failed (cleared once one succeeds).
      const why = document.createElement("div");
      why.className = "connect-error error";
      why.textContent = `Could not connect: ${s.last_connect_error}`;
      status.append(why);
    }
    tr.append(cell(s.workspace_name), status, cell(started), cell(s.tunnel_status));
    const actions = document.createElement("td");
    if (s.status === "active") {
      const end = document.createElement("button");
      end.textContent = "Disconnect";
      end.className = "disconnect link";
      end.addEventListener("click", () => disconnect(s));
      actions.append(end);
    } else {
      actions.textContent = s.end_reason ? s.end_reason.replaceAll("_", " ") : "";
    }
    tr.append(actions);
    tbody.append(tr);
  }
}

async function launch(ws, button) {
  button.disabled = true;
  say(`Launching ${ws.name}…`);
  try {
    const r = await api("POST", `/api/workspaces/${encodeURIComponent(ws.id)}/launch`);
    location.assign(`${r.stream_url}#token=${encodeURIComponent(r.viewer_token)}`);
  } catch (e) {
    say(`Could not launch ${ws.name}: ${e.message}`, true);
    button.disabled = false;
  }
}

async function disconnect(s) {
  try {
    await api("POST", `/api/sessions/${s.id}/disconnect`);
    say(`Disconnected from ${s.workspace_name}.`);
  } catch (e) {
    say(`Could not disconnect: ${e.message}`, true);
  }
  await refresh();
}

async function refresh() {
  const [workspaces, sessions] = await Promise.all([
    api("GET", "/api/workspaces"),
    api("GET", "/api/sessions?limit=20"),
  ]);
  renderWorkspaces(workspaces);
  renderSessions(sessions);
}

async function signIn() {
  try {
    const me = await api("GET", "/api/me");
    $("who").textContent = me.email || me.user_id;
    $("sign-in").hidden = true;
    $("workspaces-section").hidden = false;
    $("sessions-section").hidden = false;
    $("sign-out").hidden = false;
    await refresh();
    document.body.dataset.state = "signed-in";
  } catch (e) {
    if (token()) say(e.message, true);
  }
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("token-input").value.trim());
  $("token-input").value = "";
  signIn();
});
$("sign-out").addEventListener("click", () => signOut());
$("refresh").addEventListener("click", () => refresh().catch((e) => say(e.message, true)));

takeTokenFromFragment();
if (token()) signIn();
// A portal link opened in a tab already showing the portal changes only the fragment.
window.addEventListener("hashchange", () => {
  if (new URLSearchParams(location.hash.slice(1)).has("token")) {
    takeTokenFromFragment();
    signIn();
  }
});
