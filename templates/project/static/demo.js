// Demo page logic. Reads the rendered config from index.html, picks a view from the project's use
// cases and drives it with client.js. Everything user-supplied goes through textContent.
// Projects that serve Socket.IO can run the same views over it (`?protocol=socketio`), with the
// official socket.io-client browser bundle behind SocketIODemoClient below.
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

// ---------------------------------------------------------------- Socket.IO

/** The protocol the page runs: "socketio" when the project serves it and the URL asks for it,
 * or by default when a browser cannot present a token to the native endpoint (its token sources
 * are headers only, which a browser's WebSocket cannot set; the Socket.IO CONNECT carries it). */
function protocolChoice() {
  if (!config.socketio) return "native";
  const asked = params.get("protocol");
  if (asked === "socketio" || asked === "native") return asked;
  const browserToken =
    config.authMode === "none" || config.authMode === "cookie" ||
    config.tokenSources.includes("query") || config.tokenSources.includes("subprotocol");
  return browserToken ? "native" : "socketio";
}

/** `io` of the official browser bundle, loaded once from the project's static files. */
function loadSocketIO(src) {
  if (typeof globalThis.io === "function") return Promise.resolve(globalThis.io);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = () =>
      typeof globalThis.io === "function" ? resolve(globalThis.io) : reject(new Error(`${src} did not define io`));
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(script);
  });
}

class SocketIORequestError extends Error {
  constructor({ code, message, retry_after_ms: retryAfterMs }) {
    super(message ?? code);
    this.code = code;
    this.retryAfterMs = retryAfterMs ?? null;
  }
}

/**
 * The part of WsforgeClient's API the views use, over Socket.IO: each request is an emit with an
 * acknowledgement, `message` / `presence.*` / `resync` events become the client's events, and
 * every (re)connection resubscribes from the last seq seen, as the native client resumes.
 */
class SocketIODemoClient extends EventTarget {
  constructor(io, { path, transports, token, reconnect, requestTimeoutMs = 10000 }) {
    super();
    this.token = token;
    this.protocol = "socketio";
    this.state = "idle";
    this.requestTimeoutMs = requestTimeoutMs;
    this.subscriptions = new Map(); // channel -> { seq, epoch, waiters }
    const socket = io({
      path,
      transports,
      autoConnect: false,
      reconnectionDelay: reconnect.baseMs,
      reconnectionDelayMax: reconnect.capMs,
      auth: (cb) => cb(this.token ? { token: this.token } : {}),
    });
    this.socket = socket;
    socket.on("connect", () => {
      this.setState("open");
      this.emit("open", { protocol: "socket.io", transport: socket.io.engine.transport.name });
      if (!socket.recovered) for (const [channel, sub] of this.subscriptions) this.sendSubscribe(channel, sub);
    });
    socket.on("disconnect", (reason) => {
      this.emit("close", { code: null, reason, wasOpen: true });
      this.setState(socket.active ? "reconnecting" : "closed");
      if (!socket.active) this.emit("stopped", { code: null, reason });
    });
    socket.on("connect_error", (error) => {
      if (socket.active) return; // a transport error: the client retries with its backoff
      this.setState("closed");
      this.emit("stopped", { code: error.data?.code ?? "refused", reason: error.message });
    });
    socket.io.on("reconnect_attempt", (attempt) => {
      this.setState("reconnecting");
      this.emit("reconnecting", { attempt });
    });
    socket.on("message", (m) => this.onMessage(m));
    for (const kind of ["join", "leave"]) {
      socket.on(`presence.${kind}`, (e) => this.emit("presence", { channel: e.channel, kind, user: e.payload?.user }));
    }
    socket.on("resync", ({ channel, payload }) => {
      const sub = this.subscriptions.get(channel);
      if (sub) Object.assign(sub, { seq: payload.seq, epoch: payload.epoch });
      this.emit("resync", { channel, reason: payload.reason, seq: payload.seq, epoch: payload.epoch });
    });
    socket.on("error", (problem) => this.emit("error", { error: new SocketIORequestError(problem) }));
  }

  on(type, listener) {
    const wrapped = (event) => listener(event.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state });
  }

  connect() {
    if (this.socket.connected || this.socket.active) return;
    this.setState("connecting");
    this.socket.connect();
  }

  onMessage({ channel, seq, ts, sender, payload }) {
    const sub = this.subscriptions.get(channel);
    if (sub && typeof seq === "number") {
      if (sub.seq !== null && seq <= sub.seq) return; // a replay overlapping what arrived live
      if (sub.seq !== null && seq > sub.seq + 1) this.emit("gap", { channel, seq });
      sub.seq = seq;
    }
    this.emit("message", { channel, seq, ts, sender: sender ?? null, payload });
  }

  async request(action, argument) {
    const answer = await this.socket.timeout(this.requestTimeoutMs).emitWithAck(action, argument);
    if (answer && typeof answer === "object" && answer.error) throw new SocketIORequestError(answer.error);
    return answer;
  }

  /** Resolves with the subscribe ack; sent now if connected, else on the next connect. */
  subscribe(channel) {
    let sub = this.subscriptions.get(channel);
    if (!sub) {
      sub = { seq: null, epoch: null, waiters: [] };
      this.subscriptions.set(channel, sub);
    }
    const done = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    if (this.socket.connected) this.sendSubscribe(channel, sub);
    return done;
  }

  async sendSubscribe(channel, sub) {
    const resume = sub.seq !== null;
    const payload = resume ? { since_seq: sub.seq, ...(sub.epoch ? { epoch: sub.epoch } : {}) } : {};
    try {
      const result = await this.request("subscribe", { channel, payload });
      if (!resume) sub.seq = Math.max(sub.seq ?? 0, result.seq);
      sub.epoch = result.epoch;
      for (const waiter of sub.waiters.splice(0)) waiter.resolve(result);
    } catch (error) {
      if (this.subscriptions.get(channel) === sub) this.subscriptions.delete(channel);
      for (const waiter of sub.waiters.splice(0)) waiter.reject(error);
      this.emit("subscriptionRefused", { channel, error });
    }
  }

  async unsubscribe(channel) {
    this.subscriptions.delete(channel);
    return this.socket.connected ? this.request("unsubscribe", { channel }) : {};
  }

  publish(channel, payload, { msgId } = {}) {
    const msg_id = msgId ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    return this.request("publish", { channel, payload, msg_id });
  }

  presence(channel) {
    return this.request("presence", { channel });
  }

  history(channel, sinceSeq, limit) {
    return this.request("history", { channel, payload: limit == null ? { since_seq: sinceSeq } : { since_seq: sinceSeq, limit } });
  }

  ping() {
    return this.request("ping");
  }
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

async function main() {
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
  const protocol = protocolChoice();
  const picker = $("protocol");
  if (picker) {
    picker.value = protocol;
    picker.addEventListener("change", () => {
      params.set("protocol", picker.value);
      location.search = params.toString();
    });
  }
  let client;
  if (protocol === "socketio") {
    let io;
    try {
      io = await loadSocketIO(config.socketio.bundle);
    } catch (error) {
      notice(`${error.message}: put socket.io-client's dist/socket.io.min.js there (see the README, "Demo page over Socket.IO")`);
      return;
    }
    client = new SocketIODemoClient(io, {
      path: config.socketio.path,
      transports: config.socketio.transports,
      token: config.authMode === "jwt" ? state.token : null,
      reconnect: r,
    });
  } else {
    client = new WsforgeClient(wsUrl(), {
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
  }
  const badge = $("conn-state");
  client.on("state", ({ state: s }) => {
    badge.textContent = s;
    badge.dataset.state = s;
  });
  client.on("reconnecting", ({ attempt, delayMs }) =>
    notice(`reconnecting (attempt ${attempt})${typeof delayMs === "number" ? ` in ${Math.round(delayMs)} ms` : ""}`),
  );
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
  window.wsforge = { client, config, state, show, protocol };
  if (config.authMode !== "jwt" || state.token) connect();
  else notice("paste a token and press Connect");
}

main();
