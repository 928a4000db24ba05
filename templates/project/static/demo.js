// Demo page logic. Reads the rendered config from index.html, picks a view from the project's use
// cases and drives it with client.js. Everything user-supplied goes through textContent.
import { WsforgeClient, decodeEnvelope } from "./client.js";

const config = JSON.parse(document.getElementById("wsforge-config").textContent);
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const envelopeNames = { ...config.envelope };

const VIEW_FOR_USE_CASE = {
  chat: "chat",
  collaboration: "chat",
  gaming: "chat",
  live_feed: "ticker",
  trading: "ticker",
  iot: "ticker",
  notifications: "notifications",
};

function channelName(namespace, name) {
  return `${namespace}${config.separator}${name}`;
}

function pickNamespace(test) {
  return config.namespaces.find(test) ?? null;
}

/** The `sub` claim, for display and for private `user:<sub>` channels; the server verifies the token. */
function subjectOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="))).sub ?? null;
  } catch {
    return null;
  }
}

function wsUrl() {
  if (params.get("ws")) return params.get("ws");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${config.wsPath}`;
}

function tokenTransport() {
  if (config.authMode === "none") return "none";
  if (config.authMode === "cookie") return "cookie";
  return config.tokenSources.includes("subprotocol") ? "subprotocol" : "query";
}

function notice(text) {
  $("notice").textContent = text;
}

function formatTime(ts) {
  return typeof ts === "number" ? new Date(ts).toLocaleTimeString() : "";
}

// ---------------------------------------------------------------- views

function chatView(client, state) {
  const ns =
    pickNamespace((n) => n.client_publish && n.auth !== "private" && n.presence) ??
    pickNamespace((n) => n.client_publish && n.auth !== "private");
  if (!ns) return null;
  let channel = null;
  const members = new Map();
  const shown = new Set(); // seqs rendered in the current history epoch

  function renderPresence() {
    const list = $("presence");
    list.replaceChildren();
    for (const user of [...members.keys()].sort()) {
      const li = document.createElement("li");
      li.textContent = user;
      list.append(li);
    }
  }

  function addMessage({ seq, sender, payload, ts }) {
    if (typeof seq === "number") {
      if (shown.has(seq)) return;
      shown.add(seq);
    }
    const li = document.createElement("li");
    li.className = "message";
    if (typeof seq === "number") li.dataset.seq = String(seq);
    const who = document.createElement("span");
    who.className = "sender";
    who.textContent = (payload && payload.name) || sender || "anonymous";
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = payload && typeof payload === "object" && "text" in payload ? String(payload.text) : JSON.stringify(payload);
    const time = document.createElement("time");
    time.textContent = formatTime(ts);
    li.append(who, text, time);
    $("messages").append(li);
    li.scrollIntoView({ block: "end" });
  }

  async function showRecent(upToSeq) {
    if (ns.history_size === 0 || !(upToSeq > 0)) return;
    const since = Math.max(0, upToSeq - 50);
    const history = await client.history(channel, since, 50);
    for (const wire of history.messages) {
      const m = decodeEnvelope(wire, envelopeNames);
      if (m && m.seq <= upToSeq) addMessage(m);
    }
  }

  async function join(room) {
    if (channel) client.unsubscribe(channel).catch(() => {});
    channel = channelName(ns.name, room);
    $("room-channel").textContent = channel;
    $("messages").replaceChildren();
    shown.clear();
    members.clear();
    renderPresence();
    try {
      const result = await client.subscribe(channel);
      notice(`joined ${channel} at seq ${result.seq}`);
      if (ns.presence) {
        const list = result.presence ?? (await client.presence(channel)).members;
        for (const m of list) members.set(m.user, m.connections ?? 1);
        renderPresence();
      }
      // A fresh page shows the recent past too; the server keeps `history_size` messages.
      await showRecent(result.seq);
    } catch (error) {
      notice(`cannot join ${channel}: ${error.message}`);
    }
  }

  $("presence-panel").hidden = !ns.presence;
  $("room").value = params.get("room") ?? "lobby";
  $("join").addEventListener("click", () => join($("room").value.trim() || "lobby"));
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message-text");
    const text = input.value.trim();
    if (!text || !channel) return;
    input.value = "";
    client.publish(channel, { text, name: state.user ?? undefined }).catch((error) => notice(`not sent: ${error.message}`));
  });
  client.on("message", (m) => m.channel === channel && addMessage(m));
  client.on("presence", (p) => {
    if (p.channel !== channel) return;
    if (p.kind === "join") members.set(p.user, 1);
    else members.delete(p.user);
    renderPresence();
  });
  client.on("resync", (r) => {
    if (r.channel !== channel) return;
    // The server lost the history we were resuming from (restart, retention): refetch what it has.
    notice(`history lost (${r.reason}); older messages may be missing`);
    const divider = document.createElement("li");
    divider.className = "divider";
    divider.textContent = "history was reset";
    $("messages").append(divider);
    shown.clear();
    showRecent(r.seq).catch((error) => notice(`cannot load history: ${error.message}`));
  });
  return { start: () => join($("room").value.trim() || "lobby") };
}

function tickerView(client) {
  const ns = pickNamespace((n) => n.auth !== "private") ?? config.namespaces[0];
  const rows = new Map();
  let channel = null;
  $("feed-channel").value = params.get("channel") ?? channelName(ns.name, "demo");

  function keyOf(payload, ch) {
    if (payload && typeof payload === "object") return String(payload.symbol ?? payload.id ?? payload.key ?? ch);
    return ch;
  }

  function valueOf(payload) {
    if (payload && typeof payload === "object") {
      const v = payload.price ?? payload.value ?? payload.last;
      if (v !== undefined) return String(v);
    }
    return JSON.stringify(payload);
  }

  function update({ channel: ch, seq, ts, payload }) {
    const key = keyOf(payload, ch);
    let row = rows.get(key);
    if (!row) {
      row = document.createElement("tr");
      row.append(...[0, 1, 2, 3].map(() => document.createElement("td")));
      rows.set(key, row);
      $("ticker").tBodies[0].append(row);
    }
    const cells = row.children;
    cells[0].textContent = key;
    cells[1].textContent = valueOf(payload);
    cells[2].textContent = String(seq ?? "");
    cells[3].textContent = formatTime(ts);
    row.classList.remove("flash");
    void row.offsetWidth; // restart the CSS animation
    row.classList.add("flash");
  }

  async function subscribe() {
    if (channel) client.unsubscribe(channel).catch(() => {});
    channel = $("feed-channel").value.trim();
    try {
      const result = await client.subscribe(channel);
      notice(`subscribed to ${channel} at seq ${result.seq}`);
    } catch (error) {
      notice(`cannot subscribe to ${channel}: ${error.message}`);
    }
  }

  $("feed-subscribe").addEventListener("click", subscribe);
  client.on("message", (m) => m.channel === channel && update(m));
  return { start: subscribe };
}

function notificationsView(client, state) {
  const channels = [];
  const personal = pickNamespace((n) => n.auth === "private");
  if (personal && state.user) channels.push(channelName(personal.name, state.user));
  for (const ns of config.namespaces) {
    if (ns.auth !== "private") channels.push(channelName(ns.name, "all"));
  }
  $("notify-channels").textContent = channels.join(", ") || "-";

  client.on("message", (m) => {
    if (!channels.includes(m.channel)) return;
    const li = document.createElement("li");
    const p = m.payload;
    li.textContent = `${formatTime(m.ts)} ${m.channel}: ${p && typeof p === "object" && "text" in p ? p.text : JSON.stringify(p)}`;
    $("notifications").prepend(li);
  });
  return {
    start: async () => {
      const results = await Promise.allSettled(channels.map((ch) => client.subscribe(ch)));
      const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
      notice(failed.length ? `cannot subscribe: ${failed.join("; ")}` : `subscribed to ${channels.length} channel(s)`);
    },
  };
}

function consoleView(client) {
  const log = (line) => {
    const pre = $("console-log");
    pre.textContent = `${line}\n${pre.textContent}`.slice(0, 20000);
  };
  const ns = pickNamespace((n) => n.client_publish && n.auth !== "private") ?? config.namespaces[0];
  $("console-channel").value = channelName(ns.name, "console");
  const channel = () => $("console-channel").value.trim();
  const run = (label, promise) =>
    promise.then(
      (r) => log(`${label} -> ${JSON.stringify(r)}`),
      (e) => log(`${label} !! ${e.message}`),
    );
  $("console-subscribe").addEventListener("click", () => run(`subscribe ${channel()}`, client.subscribe(channel())));
  $("console-unsubscribe").addEventListener("click", () => run(`unsubscribe ${channel()}`, client.unsubscribe(channel())));
  $("console-ping").addEventListener("click", () => run("ping", client.ping()));
  $("console-publish").addEventListener("click", () => {
    let payload;
    try {
      payload = JSON.parse($("console-payload").value);
    } catch (e) {
      log(`payload is not JSON: ${e.message}`);
      return;
    }
    run(`publish ${channel()}`, client.publish(channel(), payload));
  });
  for (const type of ["message", "presence", "resync", "gap", "close", "reconnecting"]) {
    client.on(type, (d) => log(`${type} ${JSON.stringify(d)}`));
  }
  return { start: () => {} };
}

// ---------------------------------------------------------------- wiring

function main() {
  const state = { token: null, user: null };
  const tokenInput = $("token");
  state.token = params.get("token") || sessionStorage.getItem("wsforge.token") || null;
  if (tokenInput && state.token) tokenInput.value = state.token;
  if (config.authMode === "cookie" && state.token) {
    // Development shortcut: the server reads the session cookie during the handshake.
    document.cookie = `${config.cookieName}=${encodeURIComponent(state.token)}; path=/; SameSite=Strict`;
  }
  state.user = state.token ? subjectOf(state.token) : null;
  if ($("whoami")) $("whoami").textContent = state.user ?? "-";

  const r = config.reconnect;
  const client = new WsforgeClient(wsUrl(), {
    token: config.authMode === "jwt" ? state.token : null,
    tokenTransport: tokenTransport(),
    envelope: config.envelope,
    maxPayloadBytes: config.maxPayloadBytes,
    backoffBaseMs: r.baseMs,
    backoffCapMs: r.capMs,
    jitter: r.jitter,
    resetAfterMs: r.resetAfterMs,
    offlineQueueSize: r.offlineQueueSize,
  });
  const badge = $("conn-state");
  client.on("state", ({ state: s }) => {
    badge.textContent = s;
    badge.dataset.state = s;
  });
  client.on("reconnecting", ({ attempt, delayMs }) => notice(`reconnecting (attempt ${attempt}) in ${Math.round(delayMs)} ms`));
  client.on("open", () => notice("connected"));
  client.on("stopped", ({ code, reason }) => notice(`disconnected for good: ${code} ${reason}`));

  const views = {};
  const wanted = [...new Set(config.useCases.map((u) => VIEW_FOR_USE_CASE[u]).filter(Boolean)), "console"];
  for (const name of wanted) {
    const factory = { chat: chatView, ticker: tickerView, notifications: notificationsView, console: consoleView }[name];
    const view = factory(client, state);
    if (view) views[name] = view;
  }
  const names = Object.keys(views);
  const started = new Set();
  function show(name) {
    for (const n of names) {
      $(`view-${n}`).hidden = n !== name;
      document.querySelector(`#modes [data-view="${n}"]`)?.classList.toggle("active", n === name);
    }
    if (!started.has(name)) {
      started.add(name);
      views[name].start();
    }
  }
  for (const n of names) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.view = n;
    button.textContent = n;
    button.addEventListener("click", () => show(n));
    $("modes").append(button);
  }
  const first = names.includes(params.get("view")) ? params.get("view") : names[0];

  function connect() {
    if (tokenInput) {
      state.token = tokenInput.value.trim() || null;
      if (state.token) sessionStorage.setItem("wsforge.token", state.token);
      state.user = state.token ? subjectOf(state.token) : null;
      $("whoami").textContent = state.user ?? "-";
      if (config.authMode === "jwt") client.token = state.token;
    }
    client.connect();
    show(first);
  }
  $("auth")?.addEventListener("submit", (event) => {
    event.preventDefault();
    connect();
  });
  window.wsforge = { client, config, state, show };
  if (config.authMode !== "jwt" || state.token) connect();
  else notice("paste a token and press Connect");
}

main();
