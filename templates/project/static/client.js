// wsforge browser client: wire protocol v1 (see the project's protocol document).
//
// A dependency-free ES module. The reconnect policy (backoff), the offline queue, the close-code
// classifier and the per-channel sequence bookkeeping are pure functions and small classes with
// no I/O, so Node's built-in test runner checks them without a browser or a socket. The
// `WsforgeClient` class is the thin glue that owns the WebSocket, timers and promises.

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL_JSON = "wsforge.v1.json";
/** Browsers cannot set headers on a WebSocket, so the token rides in a subprotocol entry. */
export const AUTH_SUBPROTOCOL_PREFIX = "wsforge.auth.";

/** What a client does after the server (or the network) closed the connection. */
export const CloseAction = Object.freeze({
  STOP: "stop",
  RETRY: "retry",
  RETRY_LATER: "retry_later",
  REAUTH: "reauth",
});

const STOP_CODES = new Set([1000, 1008, 4003, 4400]);
/** Error codes about the server's state, not the request: a subscribe answered so is retried. */
export const RETRYABLE_ERRORS = new Set(["broker_unavailable", "rate_limited", "internal", "history_unavailable"]);

/** Bytes a publish grows by on its way to subscribers (protocol.py PUBLISH_HEADROOM). */
export const PUBLISH_HEADROOM = 256;

/**
 * The largest request frame the server answers with anything but `payload_too_large`, for its
 * `max_payload_bytes` (protocol.py `publish_limit`); above `maxPayloadBytes` it closes with 1009.
 */
export function publishLimit(maxPayloadBytes) {
  return Math.max(maxPayloadBytes - PUBLISH_HEADROOM, Math.floor(maxPayloadBytes / 2));
}

/**
 * Map a close code to what the client should do (contract §3, "Close codes").
 * Unknown codes are retried: giving up on a code we do not know would strand a page forever.
 */
export function classifyClose(code) {
  if (STOP_CODES.has(code)) return CloseAction.STOP;
  if (code === 1013) return CloseAction.RETRY_LATER;
  if (code === 4001) return CloseAction.REAUTH;
  return CloseAction.RETRY;
}

/**
 * Delay before reconnect attempt `attempt` (0-based), in milliseconds.
 *
 * "full" jitter draws uniformly from [0, min(cap, base * 2^attempt)) so that thousands of pages
 * dropped by one deploy do not come back in lock step; "equal" keeps half of the window fixed;
 * "none" is the bare exponential. `random` is injected so tests can pin it.
 */
export function backoffDelay(attempt, { baseMs, capMs, jitter = "full" }, random = Math.random) {
  const exp = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 52));
  if (jitter === "none") return exp;
  if (jitter === "equal") return exp / 2 + random() * (exp / 2);
  return random() * exp;
}

/**
 * Reconnect schedule with a memory: attempts grow until a connection stayed up for
 * `resetAfterMs`, which proves the server is healthy again. Times are passed in, never read.
 */
export class Backoff {
  constructor({ baseMs, capMs, jitter = "full", resetAfterMs, random = Math.random }) {
    if (!(baseMs > 0) || !(capMs > 0)) throw new RangeError("baseMs and capMs must be > 0");
    this.options = { baseMs, capMs, jitter };
    this.resetAfterMs = resetAfterMs;
    this.random = random;
    this.attempt = 0;
    this.openedAt = null;
  }

  /** The delay before the next attempt; each call counts as one attempt. */
  next() {
    const delay = backoffDelay(this.attempt, this.options, this.random);
    this.attempt += 1;
    return delay;
  }

  /**
   * A longer wait for 1013 ("overloaded, try later"): at least half the cap, so an
   * overloaded server is not hit again after a few hundred milliseconds.
   */
  nextLater() {
    this.attempt += 1;
    const { capMs } = this.options;
    return capMs / 2 + this.random() * (capMs / 2);
  }

  recordOpen(nowMs) {
    this.openedAt = nowMs;
  }

  /** Call when a connection ends; resets the schedule when it had been stable long enough. */
  recordClose(nowMs) {
    if (this.openedAt !== null && nowMs - this.openedAt >= this.resetAfterMs) this.attempt = 0;
    this.openedAt = null;
  }

  reset() {
    this.attempt = 0;
    this.openedAt = null;
  }
}

/**
 * Bounded FIFO for frames sent while offline. When full, the oldest entry is evicted and
 * returned so the caller can reject its promise: memory stays bounded and nothing is dropped
 * silently.
 */
export class OfflineQueue {
  constructor(maxSize) {
    if (!Number.isInteger(maxSize) || maxSize < 0) throw new RangeError("maxSize must be an integer >= 0");
    this.maxSize = maxSize;
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  /**
   * Append `item`. Returns the evicted item (the oldest, or `item` itself when maxSize is 0),
   * or `undefined` when nothing was evicted.
   */
  push(item) {
    if (this.maxSize === 0) return item;
    this.items.push(item);
    return this.items.length > this.maxSize ? this.items.shift() : undefined;
  }

  /** Put items back at the head (requests that were in flight when the connection dropped). */
  unshiftAll(items) {
    const evicted = [];
    this.items = items.concat(this.items);
    while (this.items.length > this.maxSize) evicted.push(this.items.pop());
    return evicted;
  }

  /** Remove and return every item, oldest first. */
  drain() {
    const items = this.items;
    this.items = [];
    return items;
  }
}

/** Verdict of `SeqTracker.accept` for one event. */
export const SeqVerdict = Object.freeze({ DELIVER: "deliver", DUPLICATE: "duplicate", GAP: "gap" });

/**
 * Per-channel "last seq seen" and history epoch: the client side of resume.
 *
 * After a reconnect the client resubscribes with `since_seq` = the last seq it delivered; the
 * server replays what was missed, and replays can overlap live events, so anything with
 * seq <= last is a duplicate. A jump forward is a gap (the server dropped events for a slow
 * consumer): delivered, but reported so the application can refetch.
 */
export class SeqTracker {
  constructor() {
    this.channels = new Map();
  }

  /** `{since_seq, epoch}` for a resubscribe, or `{}` when nothing was seen yet. */
  resumeFrom(channel) {
    const state = this.channels.get(channel);
    if (!state) return {};
    const out = { since_seq: state.seq };
    if (state.epoch != null) out.epoch = state.epoch;
    return out;
  }

  lastSeq(channel) {
    const state = this.channels.get(channel);
    return state ? state.seq : null;
  }

  /**
   * Apply a subscribe response `{seq, epoch, recovered}`. A first subscription starts at the
   * server's current seq; a recovered resume keeps our position so the replay fills the gap.
   */
  subscribed(channel, { seq, epoch = null, recovered = false }) {
    const state = this.channels.get(channel);
    if (!state || !recovered || (epoch != null && state.epoch != null && epoch !== state.epoch)) {
      this.channels.set(channel, { seq: typeof seq === "number" ? seq : 0, epoch });
    } else if (epoch != null) {
      state.epoch = epoch;
    }
  }

  /** Apply a `resync` event: history was lost, continue from the server's position. */
  resync(channel, { seq, epoch = null }) {
    this.channels.set(channel, { seq: typeof seq === "number" ? seq : 0, epoch });
  }

  /** Decide about an event with `seq` on `channel`, and advance when it is delivered. */
  accept(channel, seq) {
    const state = this.channels.get(channel);
    if (!state) {
      this.channels.set(channel, { seq, epoch: null });
      return SeqVerdict.DELIVER;
    }
    if (seq <= state.seq) return SeqVerdict.DUPLICATE;
    const verdict = seq === state.seq + 1 || state.seq === 0 ? SeqVerdict.DELIVER : SeqVerdict.GAP;
    state.seq = seq;
    return verdict;
  }

  forget(channel) {
    this.channels.delete(channel);
  }
}

/** Default wire names of the envelope fields; a project may rename them (settings.ENVELOPE). */
export const DEFAULT_ENVELOPE = Object.freeze({
  v: "v",
  type: "type",
  action: "action",
  id: "id",
  channel: "channel",
  payload: "payload",
  seq: "seq",
  ts: "ts",
  sender: "sender",
  error: "error",
});

/** Build a wire object from logical fields, leaving out the undefined ones. */
export function encodeEnvelope(fields, names = DEFAULT_ENVELOPE) {
  const out = {};
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) out[names[key] ?? key] = value;
  }
  return out;
}

/** Read a wire object back into logical fields; returns null when it is not an object. */
export function decodeEnvelope(wire, names = DEFAULT_ENVELOPE) {
  if (wire === null || typeof wire !== "object" || Array.isArray(wire)) return null;
  const out = {};
  for (const [key, wireName] of Object.entries(names)) {
    if (wireName in wire) out[key] = wire[wireName];
  }
  return out;
}

/**
 * The default codec: JSON envelopes in text frames. A codec is `{subprotocol, serialize(wireObject)
 * -> string | Uint8Array, parse(data) -> wireObject}`; `fixedFieldNames: true` means its wire
 * names are its own (protobuf), so the `envelope` option's renames do not apply to it. Binary
 * codecs (see `static/protobuf.js` in protobuf projects) get `ArrayBuffer` frames.
 */
export const JSON_CODEC = Object.freeze({
  subprotocol: SUBPROTOCOL_JSON,
  binary: false,
  fixedFieldNames: false,
  serialize: (wire) => JSON.stringify(wire),
  parse: (data) => JSON.parse(data),
});

/** Subprotocol offers for the handshake, plus the URL, for a given token transport. */
export function handshakeFor(url, token, tokenTransport, subprotocol = SUBPROTOCOL_JSON) {
  const protocols = [subprotocol];
  if (!token || tokenTransport === "none" || tokenTransport === "cookie") return { url, protocols };
  if (tokenTransport === "query") {
    const sep = url.includes("?") ? "&" : "?";
    return { url: `${url}${sep}access_token=${encodeURIComponent(token)}`, protocols };
  }
  protocols.push(AUTH_SUBPROTOCOL_PREFIX + token);
  return { url, protocols };
}

/** A request answered with an `error` envelope, or one that never got an answer. */
export class WsforgeError extends Error {
  constructor(code, message, { retryAfterMs = null, action = null } = {}) {
    super(`${code}: ${message}`);
    this.name = "WsforgeError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.action = action;
  }
}

let idCounter = 0;
function nextId() {
  idCounter += 1;
  return `c${idCounter.toString(36)}`;
}

function randomMsgId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * Reconnecting WebSocket client. Events (CustomEvent, `detail` below; or use `on()`):
 * `state` {state}, `open` {protocol}, `close` {code, reason, action, wasOpen},
 * `reconnecting` {attempt, delayMs, action}, `message` {channel, seq, ts, sender, payload},
 * `presence` {channel, kind: "join"|"leave", user}, `resync` {channel, reason, seq, epoch},
 * `gap` {channel, seq}, `subscriptionRefused` {channel, error}, `error` {error},
 * `stopped` {code, reason}, `subscriptionAdded` {channel, seq, epoch, presence} and
 * `subscriptionRemoved` {channel, reason}: the application's backend subscribed or unsubscribed
 * this user (server API); an added channel is kept and resumed like one `subscribe()` asked for.
 *
 * A subscribe answered with a retryable error (`broker_unavailable`, `rate_limited`, `internal`,
 * `history_unavailable`: the server's state, not the channel) is retried with the reconnect
 * backoff and stays wanted; any other error (`forbidden`, `invalid_channel`, ...) drops the
 * channel, rejects the waiting `subscribe()` calls and emits `subscriptionRefused`.
 */
export class WsforgeClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.token = options.token ?? null;
    this.getToken = options.getToken ?? null;
    this.tokenTransport = options.tokenTransport ?? "subprotocol";
    this.codec = options.codec ?? JSON_CODEC;
    this.envelope = this.codec.fixedFieldNames ? DEFAULT_ENVELOPE : { ...DEFAULT_ENVELOPE, ...(options.envelope ?? {}) };
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    // The server's max_payload_bytes (the demo page passes the rendered one): a bigger request
    // is refused here with payload_too_large instead of making the server close with 1009.
    this.maxFrameBytes = options.maxPayloadBytes ? publishLimit(options.maxPayloadBytes) : Infinity;
    this.largestSent = { size: 0, id: null };
    this.pingIntervalMs = options.pingIntervalMs ?? 0;
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this.now = options.now ?? (() => Date.now());
    this.setTimer = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimeout ?? ((handle) => clearTimeout(handle));
    this.backoffOptions = {
      baseMs: options.backoffBaseMs ?? 500,
      capMs: options.backoffCapMs ?? 30000,
      jitter: options.jitter ?? "full",
      resetAfterMs: options.resetAfterMs ?? 10000,
      random: options.random ?? Math.random,
    };
    this.backoff = new Backoff(this.backoffOptions);
    this.queue = new OfflineQueue(options.offlineQueueSize ?? 1000);
    this.seqs = new SeqTracker();
    this.subscriptions = new Map(); // channel -> {waiters: [{resolve, reject}], active}
    this.pending = new Map(); // id -> {frame, resolve, reject, timer}
    this.ws = null;
    this.state = "idle";
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.stopped = false;
  }

  /** Subscribe to a named event; returns a function that removes the listener. */
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

  /** Open the connection; reconnects forever until `close()` or a stop close code. */
  connect() {
    this.stopped = false;
    if (this.ws || this.reconnectTimer !== null) return;
    this.open();
  }

  open() {
    this.reconnectTimer = null;
    this.setState("connecting");
    const { url, protocols } = handshakeFor(this.url, this.token, this.tokenTransport, this.codec.subprotocol);
    let ws;
    try {
      ws = new this.WebSocketImpl(url, protocols);
      if (this.codec.binary) ws.binaryType = "arraybuffer";
    } catch (error) {
      this.emit("error", { error });
      this.scheduleReconnect(CloseAction.RETRY);
      return;
    }
    this.ws = ws;
    let wasOpen = false;
    ws.onopen = () => {
      wasOpen = true;
      this.backoff.recordOpen(this.now());
      this.setState("open");
      this.emit("open", { protocol: ws.protocol });
      this.onOpen();
    };
    ws.onmessage = (event) => this.onFrame(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClose(event.code, event.reason, wasOpen);
    };
    ws.onerror = () => {
      // The close event that follows carries the code; browsers expose nothing more here.
    };
  }

  onOpen() {
    for (const channel of this.subscriptions.keys()) this.sendSubscribe(channel);
    for (const item of this.queue.drain()) this.transmit(item);
    if (this.pingIntervalMs > 0) this.schedulePing();
  }

  onClose(code, reason, wasOpen) {
    this.backoff.recordClose(this.now());
    if (code === 1009) this.dropRefused();
    this.largestSent = { size: 0, id: null };
    this.clearTimer(this.pingTimer);
    this.pingTimer = null;
    for (const sub of this.subscriptions.values()) sub.active = false;
    const action = this.stopped ? CloseAction.STOP : classifyClose(code);
    this.emit("close", { code, reason, action, wasOpen });
    this.requeueInFlight(action);
    if (action === CloseAction.STOP) {
      this.finish(code, reason);
      return;
    }
    this.scheduleReconnect(action);
  }

  /**
   * The server closed with 1009: the largest request sent on that connection was too big. Reject
   * it with payload_too_large instead of resending it after the reconnect (same close again).
   */
  dropRefused() {
    const entry = this.pending.get(this.largestSent.id);
    if (!entry) return;
    this.pending.delete(this.largestSent.id);
    this.clearTimer(entry.timer);
    entry.reject(new WsforgeError("payload_too_large", "the server closed with 1009 (message too big)"));
  }

  /**
   * Requests in flight when the socket dropped: idempotent ones (publish carries a msg_id, the
   * rest only read) go back to the head of the queue; an rpc may have run, so it is rejected.
   */
  requeueInFlight(action) {
    const retry = [];
    for (const [id, entry] of this.pending) {
      this.clearTimer(entry.timer);
      entry.timer = null;
      const verb = entry.frame.action;
      if (action !== CloseAction.STOP && verb !== "subscribe" && !verb.startsWith("rpc.")) {
        retry.push(entry);
        continue;
      }
      this.pending.delete(id);
      if (verb !== "subscribe") entry.reject(new WsforgeError("connection_lost", `connection closed during ${verb}`));
    }
    for (const entry of retry) this.pending.delete(entry.frame.id);
    for (const evicted of this.queue.unshiftAll(retry)) {
      evicted.reject(new WsforgeError("offline_queue_full", "offline queue is full"));
    }
  }

  async scheduleReconnect(action) {
    this.setState("reconnecting");
    if (action === CloseAction.REAUTH) {
      if (!this.getToken) {
        this.finish(4001, "token expired and no getToken() was given");
        return;
      }
      try {
        this.token = await this.getToken();
      } catch (error) {
        this.emit("error", { error });
        this.finish(4001, "getToken() failed");
        return;
      }
      if (this.stopped) return;
    }
    const delayMs = action === CloseAction.RETRY_LATER ? this.backoff.nextLater() : this.backoff.next();
    this.emit("reconnecting", { attempt: this.backoff.attempt, delayMs, action });
    this.reconnectTimer = this.setTimer(() => this.open(), delayMs);
  }

  finish(code, reason) {
    this.stopped = true;
    this.setState("closed");
    for (const entry of this.queue.drain()) entry.reject(new WsforgeError("stopped", reason || `closed ${code}`));
    for (const sub of this.subscriptions.values()) {
      for (const w of sub.waiters) w.reject(new WsforgeError("stopped", reason || `closed ${code}`));
      sub.waiters = [];
    }
    this.emit("stopped", { code, reason });
  }

  /** Close for good with 1000; queued requests are rejected. */
  close(reason = "client closing") {
    this.stopped = true;
    if (this.reconnectTimer !== null) {
      this.clearTimer(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    if (this.ws) {
      this.ws.close(1000, reason);
    } else {
      this.finish(1000, reason);
    }
  }

  schedulePing() {
    this.pingTimer = this.setTimer(() => {
      this.pingTimer = null;
      const ws = this.ws;
      this.request("ping", { timeoutMs: this.pingIntervalMs }).then(
        () => this.ws === ws && this.schedulePing(),
        () => {
          // No answer in a whole interval: the path is dead even if TCP has not noticed.
          if (this.ws === ws && ws) ws.close(4000, "ping timeout");
        },
      );
    }, this.pingIntervalMs);
  }

  onFrame(data) {
    let env;
    try {
      env = decodeEnvelope(this.codec.parse(data), this.envelope);
    } catch {
      env = null;
    }
    if (!env) {
      this.emit("error", { error: new WsforgeError("bad_frame", "undecodable frame from server") });
      return;
    }
    if (env.type === "response" || env.type === "error") {
      this.settle(env);
    } else if (env.type === "event") {
      this.onEvent(env);
    }
  }

  settle(env) {
    const entry = env.id != null ? this.pending.get(env.id) : undefined;
    if (!entry) {
      if (env.type === "error") {
        const err = env.error ?? {};
        this.emit("error", { error: new WsforgeError(err.code ?? "internal", err.message ?? "") });
      }
      return;
    }
    this.pending.delete(env.id);
    this.clearTimer(entry.timer);
    if (env.type === "response") {
      entry.resolve(env.payload ?? {});
    } else {
      const err = env.error ?? {};
      entry.reject(
        new WsforgeError(err.code ?? "internal", err.message ?? "", {
          retryAfterMs: err.retry_after_ms ?? null,
          action: entry.frame.action,
        }),
      );
    }
  }

  onEvent(env) {
    const channel = env.channel;
    const payload = env.payload;
    switch (env.action) {
      case "message": {
        if (typeof env.seq === "number" && env.seq > 0) {
          const verdict = this.seqs.accept(channel, env.seq);
          if (verdict === SeqVerdict.DUPLICATE) return;
          if (verdict === SeqVerdict.GAP) this.emit("gap", { channel, seq: env.seq });
        }
        this.emit("message", { channel, seq: env.seq, ts: env.ts, sender: env.sender ?? null, payload });
        return;
      }
      case "presence.join":
      case "presence.leave":
        this.emit("presence", { channel, kind: env.action.slice(9), user: payload?.user });
        return;
      case "resync":
        this.seqs.resync(channel, { seq: payload?.seq, epoch: payload?.epoch ?? null });
        this.emit("resync", { channel, reason: payload?.reason, seq: payload?.seq, epoch: payload?.epoch });
        return;
      case "subscription.added": {
        // The application's backend subscribed this user (server API `subscribe`): follow the
        // channel exactly like one we asked for, so a reconnect resumes it from its last seq.
        let sub = this.subscriptions.get(channel);
        if (!sub) {
          sub = { waiters: [], active: true };
          this.subscriptions.set(channel, sub);
        }
        sub.active = true;
        this.seqs.subscribed(channel, { seq: payload?.seq, epoch: payload?.epoch ?? null, recovered: false });
        this.emit("subscriptionAdded", {
          channel,
          seq: payload?.seq ?? 0,
          epoch: payload?.epoch ?? null,
          presence: payload?.presence ?? null,
        });
        return;
      }
      case "subscription.removed": {
        // The backend removed it (server API `unsubscribe`); the server already left the channel.
        const sub = this.subscriptions.get(channel);
        this.subscriptions.delete(channel);
        this.seqs.forget(channel);
        if (sub) {
          this.clearTimer(sub.retryTimer);
          for (const w of sub.waiters) w.reject(new WsforgeError("unsubscribed", channel));
        }
        this.emit("subscriptionRemoved", { channel, reason: payload?.reason ?? "server" });
        return;
      }
      default:
        this.emit("event", { action: env.action, channel, payload });
    }
  }

  /**
   * Send a request and wait for the response with the same id. While offline the request waits
   * in the offline queue; its timeout starts when it is actually sent.
   *
   * @returns {Promise<any>} the response payload; rejects with WsforgeError on an error envelope,
   *   a timeout (`timeout`), a full queue (`offline_queue_full`) or `close()` (`stopped`).
   */
  request(action, { channel, payload, timeoutMs, extra } = {}) {
    if (this.stopped && this.state === "closed") {
      return Promise.reject(new WsforgeError("stopped", "client is closed"));
    }
    return new Promise((resolve, reject) => {
      const frame = { v: PROTOCOL_VERSION, type: "request", action, id: nextId(), channel, payload, ...extra };
      const data = this.codec.serialize(encodeEnvelope(frame, this.envelope));
      const size = typeof data === "string" ? utf8Length(data) : data.byteLength;
      if (size > this.maxFrameBytes) {
        reject(new WsforgeError("payload_too_large", `${action} of ${size} bytes; the server takes at most ${this.maxFrameBytes}`));
        return;
      }
      const entry = { frame, data, size, resolve, reject, timer: null, timeoutMs: timeoutMs ?? this.requestTimeoutMs };
      if (this.state === "open" && this.ws) {
        this.transmit(entry);
      } else {
        const evicted = this.queue.push(entry);
        if (evicted) evicted.reject(new WsforgeError("offline_queue_full", "offline queue is full"));
      }
    });
  }

  transmit(entry) {
    this.pending.set(entry.frame.id, entry);
    entry.timer = this.setTimer(() => {
      if (this.pending.get(entry.frame.id) !== entry) return;
      this.pending.delete(entry.frame.id);
      entry.reject(new WsforgeError("timeout", `no response to ${entry.frame.action} in ${entry.timeoutMs} ms`));
    }, entry.timeoutMs);
    if (entry.size > this.largestSent.size) this.largestSent = { size: entry.size, id: entry.frame.id };
    this.ws.send(entry.data ?? this.codec.serialize(encodeEnvelope(entry.frame, this.envelope)));
  }

  /**
   * Join `channel`; kept across reconnects (resubscribed with `since_seq` to resume).
   * Resolves with the first successful subscribe response.
   */
  subscribe(channel) {
    return new Promise((resolve, reject) => {
      let sub = this.subscriptions.get(channel);
      if (!sub) {
        sub = { waiters: [], active: false };
        this.subscriptions.set(channel, sub);
      }
      sub.waiters.push({ resolve, reject });
      if (this.state === "open" && this.ws && !sub.active) this.sendSubscribe(channel);
    });
  }

  sendSubscribe(channel) {
    const sub = this.subscriptions.get(channel);
    sub.active = true;
    const payload = this.seqs.resumeFrom(channel);
    const frame = { v: PROTOCOL_VERSION, type: "request", action: "subscribe", id: nextId(), channel, payload };
    const entry = {
      frame,
      timeoutMs: this.requestTimeoutMs,
      timer: null,
      resolve: (result) => {
        sub.backoff = null;
        this.seqs.subscribed(channel, result ?? {});
        const waiters = sub.waiters;
        sub.waiters = [];
        for (const w of waiters) w.resolve(result);
      },
      reject: (error) => {
        sub.active = false;
        if (error.code === "timeout") {
          if (this.ws) this.ws.close(4000, "subscribe timeout");
          return;
        }
        if (this.subscriptions.get(channel) !== sub) return; // unsubscribed meanwhile
        if (RETRYABLE_ERRORS.has(error.code)) {
          this.retrySubscribe(channel, sub, error);
          return;
        }
        // A refusal (forbidden, invalid_channel) will not change on retry: forget the channel.
        this.subscriptions.delete(channel);
        this.seqs.forget(channel);
        const waiters = sub.waiters;
        sub.waiters = [];
        for (const w of waiters) w.reject(error);
        this.emit("subscriptionRefused", { channel, error });
      },
    };
    this.transmit(entry);
  }

  /** Ask again after a retryable refusal, on the same socket; a new socket resubscribes anyway. */
  retrySubscribe(channel, sub, error) {
    sub.backoff ??= new Backoff(this.backoffOptions);
    const delayMs = Math.max(sub.backoff.next(), error.retryAfterMs ?? 0);
    const ws = this.ws;
    this.clearTimer(sub.retryTimer);
    sub.retryTimer = this.setTimer(() => {
      sub.retryTimer = null;
      if (this.stopped || this.ws !== ws || this.state !== "open" || sub.active) return;
      if (this.subscriptions.get(channel) !== sub) return;
      this.sendSubscribe(channel);
    }, delayMs);
  }

  async unsubscribe(channel) {
    const sub = this.subscriptions.get(channel);
    this.subscriptions.delete(channel);
    this.seqs.forget(channel);
    if (sub) {
      this.clearTimer(sub.retryTimer);
      for (const w of sub.waiters) w.reject(new WsforgeError("unsubscribed", channel));
    }
    if (this.state === "open") return this.request("unsubscribe", { channel });
    return {};
  }

  /** Publish with a msg_id, so a retry after a reconnect is not delivered twice. */
  publish(channel, payload, { msgId } = {}) {
    return this.request("publish", { channel, payload, extra: { msg_id: msgId ?? randomMsgId() } });
  }

  presence(channel) {
    return this.request("presence", { channel });
  }

  history(channel, sinceSeq, limit) {
    const payload = limit == null ? { since_seq: sinceSeq } : { since_seq: sinceSeq, limit };
    return this.request("history", { channel, payload });
  }

  ping() {
    return this.request("ping");
  }

  /** Refresh the token on the live connection and for future reconnects. */
  async refreshAuth(token) {
    const result = await this.request("auth.refresh", { payload: { token } });
    this.token = token;
    return result;
  }

  rpc(name, payload) {
    return this.request(`rpc.${name}`, { payload });
  }

  lastSeq(channel) {
    return this.seqs.lastSeq(channel);
  }
}

/** Bytes of `text` in UTF-8, without allocating the encoded copy. */
function utf8Length(text) {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4;
      i += 1;
    } else bytes += 3;
  }
  return bytes;
}
