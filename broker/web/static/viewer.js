// The viewer: one session's desktop through guacamole-common-js over the
// broker's WebSocket tunnel. The viewer token arrives in the URL fragment (never
// sent to a server log), is kept in this tab only, and is the one credential used.

import Guacamole from "/static/vendor/guacamole-common.js";

const $ = (id) => document.getElementById(id);
const sessionId = location.pathname.split("/")[2];
const storageKey = `broker.viewer.${sessionId}`;

const ENDED = {
  0: ["Session ended", "You disconnected from this session."],
  522: ["Session timed out", "The session reached its time limit or was idle too long."],
  523: ["Session ended", "The session was closed: the workspace was stopped or an administrator ended it."],
};
// The broker's words for every status the tunnel can close with (Guacamole
// status codes; guacamole-common-js adds 514 when the server stops answering,
// 512 for a close without a status). The text that came with the status
// (guacd's or the broker's) is shown under it, unless it says nothing more.
const FAILED = {
  256: "The remote desktop does not support what was asked of it.",
  512: "The connection failed because of an error in the broker.",
  513: "The broker is restarting. Reconnect to continue where you left off.",
  514: "The remote desktop did not answer in time.",
  515: "The remote desktop reported an error.",
  516: "This session does not exist.",
  517: "This session is busy. Try again in a moment.",
  518: "The remote desktop closed the connection.",
  519: "The remote desktop could not be reached, or it refused the connection.",
  520: "The remote desktop ended the connection unexpectedly. Try again in a moment.",
  521: "This session is in use elsewhere.",
  768: "The browser sent a request the broker could not accept.",
  769: "This viewer link is not valid (or the session has ended). Open the session again from the portal.",
  771: "You are not allowed to view this session.",
  776: "The connection was idle for too long.",
  781: "The browser sent more data than the connection allows.",
  783: "The browser sent something this connection does not allow.",
  797: "Too many connections are open. Close another viewer, then reconnect.",
};
// Texts that add nothing to the broker's words: guacd's catch-all, and
// guacamole-common-js's own generic ones.
const SAYS_NOTHING = /^(\d*|Aborted\. See logs\.|Internal error\.?|Upstream error\.?|Connection closed\.?)$/i;

function takeToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromHash = params.get("token");
  if (fromHash) {
    sessionStorage.setItem(storageKey, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(storageKey);
}

// While the session's network path is being prepared (no tunnel grant recorded
// yet) the page asks /info again every PATH_POLL_MS and connects once it is
// ready, for at most PATH_WAIT_MS; a failed or revoked path is a final error.
const PATH_WAIT_MS = 60000;
const PATH_POLL_MS = 1000;
const NO_PATH = 514;

const token = takeToken();
let client = null;
let waitingSince = null;
let ended = false;
let lastError = null;

function setState(state, text) {
  document.body.dataset.state = state;
  $("status").textContent = text;
}

function showOverlay(title, text, canReconnect, detail = "") {
  $("overlay-title").textContent = title;
  $("overlay-text").textContent = text;
  $("overlay-detail").textContent = detail;
  $("overlay-detail").hidden = !detail;
  $("reconnect").hidden = !canReconnect;
  $("overlay").hidden = false;
}

// The text that came with a status, when it tells the user more than `text`.
function detailOf(message, text) {
  const detail = (message || "").trim();
  return SAYS_NOTHING.test(detail) || detail === text ? "" : detail;
}

function showEnded(code, message) {
  ended = true;
  const [title, text] = ENDED[code] || ENDED[523];
  setState("ended", title);
  showOverlay(title, text, false, code === 0 ? "" : detailOf(message, text));
  $("disconnect").disabled = true;
  sessionStorage.removeItem(storageKey);
}

// 769/771 from the broker refuse the viewer itself (before the relay starts); the
// same statuses once the relay runs (the tunnel has its id) are guacd's: the
// remote desktop refused the workspace's login.
const REMOTE_LOGIN_REFUSED = "The remote desktop refused the username or password.";

function showError(status, relayed) {
  const code = status.code;
  if (code in ENDED) return showEnded(code, status.message);
  const remoteLogin = relayed && (code === 769 || code === 771);
  const text = remoteLogin ? REMOTE_LOGIN_REFUSED : FAILED[code] || `The connection failed (status ${code}).`;
  setState("error", "Connection failed");
  const final = !remoteLogin && (code === 769 || code === 771);
  showOverlay("Connection failed", text, !final, detailOf(status.message, text));
}

function connectData() {
  const el = $("display");
  const params = new URLSearchParams();
  params.set("token", token);
  params.set("GUAC_WIDTH", Math.max(1, Math.round(el.clientWidth * devicePixelRatio)));
  params.set("GUAC_HEIGHT", Math.max(1, Math.round(el.clientHeight * devicePixelRatio)));
  params.set("GUAC_DPI", Math.round(96 * devicePixelRatio));
  params.set("GUAC_TIMEZONE", Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  for (const type of Guacamole.AudioPlayer.getSupportedTypes()) params.append("GUAC_AUDIO", type);
  for (const type of Guacamole.VideoPlayer.getSupportedTypes()) params.append("GUAC_VIDEO", type);
  for (const type of ["image/png", "image/jpeg", "image/webp"]) params.append("GUAC_IMAGE", type);
  return params.toString();
}

function fit() {
  if (!client) return;
  const display = client.getDisplay();
  const el = $("display");
  const w = display.getWidth();
  const h = display.getHeight();
  if (!w || !h) return;
  display.scale(Math.min(el.clientWidth / w, el.clientHeight / h));
}

function bindInput(c) {
  const display = c.getDisplay();
  const element = display.getElement();
  const mouse = new Guacamole.Mouse(element);
  mouse.onEach(["mousedown", "mouseup", "mousemove"], (e) => c.sendMouseState(e.state, true));
  const touch = new Guacamole.Mouse.Touchscreen(element);
  touch.onEach(["mousedown", "mouseup", "mousemove"], (e) => c.sendMouseState(e.state, true));
  const keyboard = new Guacamole.Keyboard(document);
  keyboard.onkeydown = (keysym) => {
    if (document.activeElement && ["TEXTAREA", "INPUT"].includes(document.activeElement.tagName)) {
      return true;
    }
    c.sendKeyEvent(1, keysym);
    return false;
  };
  keyboard.onkeyup = (keysym) => c.sendKeyEvent(0, keysym);
  return keyboard;
}

let clipboardPolicy = { copy: true, paste: true };

function bindClipboard(c) {
  const { copy, paste } = clipboardPolicy;
  $("clipboard-toggle").hidden = !copy && !paste;
  $("clipboard-send").hidden = !paste;
  c.onclipboard = (stream, mimetype) => {
    if (!copy || !/^text\//.test(mimetype)) return;
    const reader = new Guacamole.StringReader(stream);
    let text = "";
    reader.ontext = (chunk) => { text += chunk; };
    reader.onend = () => { $("clipboard").value = text; };
  };
}

function sendClipboard() {
  if (!client) return;
  const writer = new Guacamole.StringWriter(client.createClipboardStream("text/plain"));
  writer.sendText($("clipboard").value);
  writer.sendEnd();
}

function askRequired(c, names) {
  const fields = $("required-fields");
  fields.replaceChildren();
  for (const name of names) {
    const label = document.createElement("label");
    label.textContent = name;
    const input = document.createElement("input");
    input.name = name;
    input.type = /password|passphrase/.test(name) ? "password" : "text";
    input.autocomplete = "off";
    label.append(input);
    fields.append(label);
  }
  const dialog = $("required");
  dialog.onclose = () => {
    for (const input of fields.querySelectorAll("input")) {
      const stream = c.createArgumentValueStream("text/plain", input.name);
      const writer = new Guacamole.StringWriter(stream);
      writer.sendText(input.value);
      writer.sendEnd();
      input.value = "";
    }
  };
  dialog.showModal();
}

function connect() {
  $("overlay").hidden = true;
  lastError = null;
  setState("connecting", "Connecting…");
  const tunnel = new Guacamole.WebSocketTunnel(`/viewer/${sessionId}/websocket-tunnel`);
  const c = new Guacamole.Client(tunnel);
  client = c;
  const el = $("display");
  el.replaceChildren(c.getDisplay().getElement());
  c.getDisplay().onresize = fit;
  tunnel.onerror = (status) => { lastError = status; };
  c.onerror = (status) => { lastError = status; };
  c.onrequired = (names) => askRequired(c, names);
  bindClipboard(c);
  const keyboard = bindInput(c);
  let finished = false;
  const closed = () => {
    if (finished || client !== c) return;
    finished = true;
    keyboard.onkeydown = keyboard.onkeyup = null;
    if (ended) return;
    if (lastError && lastError.code === NO_PATH) retryWhenReady(lastError);
    else if (lastError) showError(lastError, tunnel.uuid !== null);
    else showEnded(0, "");
  };
  c.onstatechange = (state) => {
    if (state === Guacamole.Client.State.CONNECTED) {
      waitingSince = null;
      setState("connected", "Connected");
      el.focus();
      fit();
    } else if (state === Guacamole.Client.State.WAITING) {
      setState("connecting", "Waiting for the desktop…");
    } else if (state === Guacamole.Client.State.DISCONNECTED) {
      closed();
    }
  };
  // The client does not notice the tunnel closing by itself: the broker closes
  // it with the status that says why (0 for a normal end).
  tunnel.onstatechange = (state) => {
    if (state === Guacamole.Tunnel.State.CLOSED) closed();
  };
  c.connect(connectData());
}

async function disconnect() {
  $("disconnect").disabled = true;
  const resp = await fetch(`/api/sessions/${sessionId}/disconnect`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
  }).catch(() => null);
  if (!resp || !resp.ok) {
    const body = resp ? await resp.json().catch(() => ({})) : {};
    $("disconnect").disabled = false;
    $("status").textContent = `Could not disconnect: ${body.detail || "broker unreachable"}`;
  }
  // The tunnel closes with status 0 when the session ends; that shows the ended state.
}

// The session's state: the /info body, "gone" (401/404) or null (unreachable).
async function readInfo() {
  const info = await fetch(`/viewer/${sessionId}/info`, {
    headers: { Authorization: `Bearer ${token}` },
  }).catch(() => null);
  if (info && info.ok) return info.json();
  if (info && (info.status === 401 || info.status === 404)) return "gone";
  return null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Wait while /info says the network path is being prepared. True when the
// page should connect; otherwise it has shown why not.
async function pathReady(body, status) {
  waitingSince = waitingSince ?? Date.now();
  for (;;) {
    if (body === "gone") {
      showError({ code: 769, message: "" });
      return false;
    }
    if (!body || body.path_ready || body.tunnel_status === undefined) return true;
    if (["failed", "revoked"].includes(body.tunnel_status)) {
      setState("error", "Connection failed");
      showOverlay("Connection failed", "The network path to this workspace failed. Open the session again from the portal.", false);
      return false;
    }
    if (Date.now() - waitingSince > PATH_WAIT_MS) {
      setState("error", "Connection failed");
      showOverlay("Connection failed", status?.message || "The network path to this workspace is still being prepared.", true);
      return false;
    }
    setState("preparing", "Preparing the network path…");
    await sleep(PATH_POLL_MS);
    body = await readInfo();
  }
}

// The tunnel closed with 514: retry while /info says the path is being
// prepared; a 514 with the path in place came from guacd and is shown as it is.
async function retryWhenReady(status) {
  const body = await readInfo();
  if (!body || (body !== "gone" && body.path_ready)) return showError(status);
  if (await pathReady(body, status)) connect();
}

function reconnect() {
  waitingSince = null;
  connect();
}

async function start() {
  if (!token) {
    showError({ code: 769, message: "" });
    return;
  }
  const body = await readInfo();
  if (body && body !== "gone") {
    document.title = `${body.workspace_name} · Connection broker`;
    clipboardPolicy = body.clipboard;
    $("recording").hidden = !body.recording;
    $("title").textContent = body.workspace_name;
    if (body.app_url) {
      location.replace(`${body.app_url}#token=${encodeURIComponent(token)}`);
      return;
    }
  }
  if (await pathReady(body, null)) connect();
}

$("disconnect").addEventListener("click", disconnect);
$("reconnect").addEventListener("click", reconnect);
$("clipboard-toggle").addEventListener("click", () => {
  $("clipboard-panel").hidden = !$("clipboard-panel").hidden;
});
$("clipboard-send").addEventListener("click", sendClipboard);
window.addEventListener("resize", () => {
  fit();
  if (client) {
    const el = $("display");
    client.sendSize(Math.round(el.clientWidth * devicePixelRatio), Math.round(el.clientHeight * devicePixelRatio));
  }
});
start();
