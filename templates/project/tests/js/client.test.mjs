// WsforgeClient glue against a scripted peer: the socket is a recording stand-in that the test
// drives frame by frame (Node 20 has no WebSocket server), and time is a manual clock, so no
// test sleeps. The real browser path is covered by tests/test_browser_e2e.py.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { AUTH_SUBPROTOCOL_PREFIX, SUBPROTOCOL_JSON, WsforgeClient, WsforgeError } from "../../static/client.js";

/** Timers that fire only when the test advances the clock. */
class ManualClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextHandle = 1;
  }
  setTimeout = (fn, ms) => {
    const handle = this.nextHandle++;
    this.timers.set(handle, { at: this.now + ms, fn, ms });
    return handle;
  };
  clearTimeout = (handle) => {
    this.timers.delete(handle);
  };
  /** Delays of the timers now pending, in creation order. */
  pendingDelays() {
    return [...this.timers.values()].map((t) => t.ms);
  }
  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at);
      if (due.length === 0) break;
      const [handle, timer] = due[0];
      this.timers.delete(handle);
      this.now = timer.at;
      timer.fn();
    }
    this.now = until;
  }
}

/** Records what the client sends; the test plays the server. */
class ScriptedSocket {
  static instances = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.protocol = "";
    this.closedWith = null;
    ScriptedSocket.instances.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.serverClose(code, reason);
  }
  // --- server side ---
  accept() {
    this.protocol = SUBPROTOCOL_JSON;
    this.onopen?.({});
  }
  deliver(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  respond(request, payload) {
    this.deliver({ v: 1, type: "response", action: request.action, id: request.id, payload });
  }
  serverClose(code, reason = "") {
    this.onclose?.({ code, reason });
  }
  lastSent() {
    return this.sent[this.sent.length - 1];
  }
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function makeClient(clock, options = {}) {
  return new WsforgeClient("ws://127.0.0.1:1/ws", {
    WebSocket: ScriptedSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: () => clock.now,
    random: () => 0.5,
    backoffBaseMs: 100,
    backoffCapMs: 1000,
    resetAfterMs: 5000,
    requestTimeoutMs: 2000,
    ...options,
  });
}

const event = (channel, seq, payload) => ({ v: 1, type: "event", action: "message", channel, seq, ts: 1, payload });

describe("WsforgeClient", () => {
  let clock;
  beforeEach(() => {
    ScriptedSocket.instances = [];
    clock = new ManualClock();
  });

  test("offers the JSON subprotocol and hands the token over in a subprotocol entry", () => {
    const client = makeClient(clock, { token: "h.p.s" });
    client.connect();
    assert.deepEqual(ScriptedSocket.instances[0].protocols, [SUBPROTOCOL_JSON, `${AUTH_SUBPROTOCOL_PREFIX}h.p.s`]);
  });

  test("a request resolves on the response with its id, not on others", async () => {
    const client = makeClient(clock);
    client.connect();
    const ws = ScriptedSocket.instances[0];
    ws.accept();
    const promise = client.ping();
    const req = ws.lastSent();
    assert.equal(req.type, "request");
    assert.equal(req.action, "ping");
    assert.equal(req.v, 1);
    ws.deliver({ v: 1, type: "response", action: "ping", id: "someone-else", payload: { ts: 1 } });
    ws.respond(req, { ts: 42 });
    assert.deepEqual(await promise, { ts: 42 });
  });

  test("an error envelope rejects with its code and retry_after_ms", async () => {
    const client = makeClient(clock);
    client.connect();
    const ws = ScriptedSocket.instances[0];
    ws.accept();
    const promise = client.publish("room:a", { text: "hi" });
    const req = ws.lastSent();
    assert.equal(typeof req.msg_id, "string");
    ws.deliver({ v: 1, type: "error", action: "publish", id: req.id, error: { code: "rate_limited", message: "slow down", retry_after_ms: 250 } });
    await assert.rejects(promise, (err) => err instanceof WsforgeError && err.code === "rate_limited" && err.retryAfterMs === 250);
  });

  test("a request with no answer times out", async () => {
    const client = makeClient(clock);
    client.connect();
    ScriptedSocket.instances[0].accept();
    const promise = client.request("rpc.echo", { payload: 1, timeoutMs: 300 });
    clock.advance(299);
    clock.advance(1);
    await assert.rejects(promise, (err) => err.code === "timeout");
  });

  test("requests made while offline are queued and sent after the open, after resubscribing", async () => {
    const client = makeClient(clock);
    const sub = client.subscribe("room:a");
    const pub = client.publish("room:a", "queued");
    client.connect();
    const ws = ScriptedSocket.instances[0];
    assert.equal(ws.sent.length, 0);
    ws.accept();
    assert.deepEqual(ws.sent.map((f) => f.action), ["subscribe", "publish"]);
    ws.respond(ws.sent[0], { seq: 0, epoch: "e1", recovered: false, replayed: 0 });
    ws.respond(ws.sent[1], { seq: 1 });
    assert.equal((await sub).epoch, "e1");
    assert.deepEqual(await pub, { seq: 1 });
  });

  test("the offline queue is bounded: the oldest request is rejected", async () => {
    const client = makeClient(clock, { offlineQueueSize: 2 });
    const first = client.publish("room:a", 1);
    client.publish("room:a", 2).catch(() => {});
    client.publish("room:a", 3).catch(() => {});
    await assert.rejects(first, (err) => err.code === "offline_queue_full");
    assert.equal(client.queue.size, 2);
  });

  test("reconnects with backoff, resubscribes from the last seq and drops replayed duplicates", async () => {
    const client = makeClient(clock);
    const got = [];
    client.on("message", (m) => got.push(m.seq));
    client.subscribe("room:a");
    client.connect();
    let ws = ScriptedSocket.instances[0];
    ws.accept();
    ws.respond(ws.sent[0], { seq: 0, epoch: "e1", recovered: false, replayed: 0 });
    await flush();
    ws.deliver(event("room:a", 1, "a"));
    ws.deliver(event("room:a", 2, "b"));
    ws.serverClose(1001, "going away");
    assert.equal(client.state, "reconnecting");
    assert.deepEqual(clock.pendingDelays(), [50]); // full jitter, random()=0.5, attempt 0: 0.5 * 100
    clock.advance(50);
    ws = ScriptedSocket.instances[1];
    ws.accept();
    const resub = ws.sent[0];
    assert.equal(resub.action, "subscribe");
    assert.deepEqual(resub.payload, { since_seq: 2, epoch: "e1" });
    ws.respond(resub, { seq: 4, epoch: "e1", recovered: true, replayed: 2 });
    for (const seq of [2, 3, 4, 4]) ws.deliver(event("room:a", seq, "x"));
    assert.deepEqual(got, [1, 2, 3, 4]);
  });

  test("backoff grows across failed attempts and resets after a stable connection", () => {
    const client = makeClient(clock, { random: () => 0.999 });
    client.connect();
    const delays = [];
    for (let i = 0; i < 5; i += 1) {
      ScriptedSocket.instances.at(-1).serverClose(1006);
      delays.push(...clock.pendingDelays());
      clock.advance(1000);
    }
    assert.deepEqual(delays.map(Math.round), [100, 200, 400, 799, 999]);
    const ws = ScriptedSocket.instances.at(-1);
    ws.accept();
    clock.advance(5000);
    ws.serverClose(1011);
    assert.deepEqual(clock.pendingDelays().map(Math.round), [100]);
  });

  test("a stop code ends the client and rejects what is queued", async () => {
    const client = makeClient(clock);
    const stopped = [];
    client.on("stopped", (d) => stopped.push(d.code));
    client.connect();
    const ws = ScriptedSocket.instances[0];
    const queued = client.publish("room:a", 1);
    ws.serverClose(1008, "origin");
    await assert.rejects(queued, (err) => err.code === "stopped");
    assert.equal(client.state, "closed");
    assert.deepEqual(stopped, [1008]);
    assert.equal(clock.timers.size, 0);
  });

  test("1013 waits a longer backoff", () => {
    const client = makeClient(clock, { random: () => 0 });
    client.connect();
    ScriptedSocket.instances[0].serverClose(1013);
    assert.deepEqual(clock.pendingDelays(), [500]);
  });

  test("4001 fetches a new token and reconnects with it", async () => {
    let calls = 0;
    const client = makeClient(clock, { token: "old", getToken: async () => `new${++calls}` });
    client.connect();
    ScriptedSocket.instances[0].accept();
    ScriptedSocket.instances[0].serverClose(4001, "token expired");
    await flush();
    clock.advance(1000);
    assert.equal(calls, 1);
    assert.deepEqual(ScriptedSocket.instances[1].protocols, [SUBPROTOCOL_JSON, `${AUTH_SUBPROTOCOL_PREFIX}new1`]);
  });

  test("4001 without getToken stops", async () => {
    const client = makeClient(clock, { token: "old" });
    client.connect();
    ScriptedSocket.instances[0].serverClose(4001);
    await flush();
    assert.equal(client.state, "closed");
  });

  test("an in-flight publish is resent with the same msg_id; an rpc is rejected", async () => {
    const client = makeClient(clock);
    client.connect();
    let ws = ScriptedSocket.instances[0];
    ws.accept();
    const pub = client.publish("room:a", "hello");
    const rpc = client.rpc("echo", 1);
    const firstMsgId = ws.sent[0].msg_id;
    ws.serverClose(1006);
    await assert.rejects(rpc, (err) => err.code === "connection_lost");
    clock.advance(1000);
    ws = ScriptedSocket.instances[1];
    ws.accept();
    assert.equal(ws.sent[0].action, "publish");
    assert.equal(ws.sent[0].msg_id, firstMsgId);
    ws.respond(ws.sent[0], { seq: 7 });
    assert.deepEqual(await pub, { seq: 7 });
  });

  test("presence, resync and gaps surface as events", () => {
    const client = makeClient(clock);
    const seen = [];
    client.on("presence", (d) => seen.push(["presence", d.kind, d.user]));
    client.on("resync", (d) => seen.push(["resync", d.seq]));
    client.on("gap", (d) => seen.push(["gap", d.seq]));
    client.subscribe("room:a");
    client.connect();
    const ws = ScriptedSocket.instances[0];
    ws.accept();
    ws.respond(ws.sent[0], { seq: 3, epoch: "e", recovered: false, replayed: 0 });
    ws.deliver({ v: 1, type: "event", action: "presence.join", channel: "room:a", payload: { user: "bob" } });
    ws.deliver({ v: 1, type: "event", action: "presence.leave", channel: "room:a", payload: { user: "bob" } });
    ws.deliver({ v: 1, type: "event", action: "resync", channel: "room:a", payload: { reason: "epoch", seq: 10, epoch: "f" } });
    ws.deliver(event("room:a", 13, "x"));
    assert.deepEqual(seen, [
      ["presence", "join", "bob"],
      ["presence", "leave", "bob"],
      ["resync", 10],
      ["gap", 13],
    ]);
  });

  test("a server-side subscription is followed, resumed after a reconnect, and removed", () => {
    const client = makeClient(clock);
    const seen = [];
    client.on("subscriptionAdded", (d) => seen.push(["added", d.channel, d.seq]));
    client.on("subscriptionRemoved", (d) => seen.push(["removed", d.channel, d.reason]));
    client.on("message", (d) => seen.push(["message", d.seq]));
    client.connect();
    let ws = ScriptedSocket.instances[0];
    ws.accept();
    const added = { seq: 2, epoch: "e", recovered: true, replayed: 0 };
    ws.deliver({ v: 1, type: "event", action: "subscription.added", channel: "room:b", payload: added });
    ws.deliver(event("room:b", 3, "x"));
    assert.deepEqual([...client.subscriptions.keys()], ["room:b"]);
    ws.serverClose(1001);
    clock.advance(1000);
    ws = ScriptedSocket.instances[1];
    ws.accept();
    const resub = ws.lastSent();
    assert.deepEqual([resub.action, resub.channel, resub.payload], ["subscribe", "room:b", { since_seq: 3, epoch: "e" }]);
    ws.respond(resub, { seq: 3, epoch: "e", recovered: true, replayed: 0 });
    ws.deliver({ v: 1, type: "event", action: "subscription.removed", channel: "room:b", payload: { reason: "server" } });
    assert.equal(client.subscriptions.size, 0);
    assert.deepEqual(seen, [
      ["added", "room:b", 2],
      ["message", 3],
      ["removed", "room:b", "server"],
    ]);
  });

  test("a refused subscription rejects and is not retried", async () => {
    const client = makeClient(clock);
    client.connect();
    const ws = ScriptedSocket.instances[0];
    ws.accept();
    const sub = client.subscribe("admin:x");
    const req = ws.lastSent();
    ws.deliver({ v: 1, type: "error", id: req.id, error: { code: "forbidden", message: "no" } });
    await assert.rejects(sub, (err) => err.code === "forbidden");
    ws.serverClose(1001);
    clock.advance(1000);
    ScriptedSocket.instances[1].accept();
    assert.deepEqual(ScriptedSocket.instances[1].sent, []);
  });

  test("a resubscribe answered broker_unavailable is retried with backoff, not dropped", async () => {
    const client = makeClient(clock);
    const seen = [];
    client.on("message", (d) => seen.push(d.seq));
    client.on("subscriptionRefused", (d) => seen.push(["refused", d.channel]));
    const sub = client.subscribe("room:a");
    client.connect();
    let ws = ScriptedSocket.instances[0];
    ws.accept();
    ws.respond(ws.sent[0], { seq: 4, epoch: "e", recovered: false, replayed: 0 });
    await sub;
    ws.deliver(event("room:a", 5, "x"));
    ws.serverClose(1001);
    clock.advance(1000);
    ws = ScriptedSocket.instances[1];
    ws.accept();
    const resub = ws.lastSent();
    assert.deepEqual([resub.action, resub.payload], ["subscribe", { since_seq: 5, epoch: "e" }]);
    ws.deliver({ v: 1, type: "error", id: resub.id, error: { code: "broker_unavailable", message: "down" } });
    assert.equal(ws.sent.length, 1, "no retry before the backoff delay");
    clock.advance(1000);
    const retry = ws.lastSent();
    assert.deepEqual([ws.sent.length, retry.action, retry.payload], [2, "subscribe", { since_seq: 5, epoch: "e" }]);
    ws.respond(retry, { seq: 6, epoch: "e", recovered: true, replayed: 1 });
    ws.deliver(event("room:a", 6, "y"));
    ws.deliver(event("room:a", 7, "z"));
    assert.deepEqual(seen, [5, 6, 7]);
    assert.ok(client.subscriptions.has("room:a"));
  });

  test("a resubscribe refused for good drops the channel and tells the application", () => {
    const client = makeClient(clock);
    const refused = [];
    client.on("subscriptionRefused", (d) => refused.push([d.channel, d.error.code]));
    client.subscribe("room:a");
    client.connect();
    let ws = ScriptedSocket.instances[0];
    ws.accept();
    ws.respond(ws.sent[0], { seq: 0, epoch: "e", recovered: false, replayed: 0 });
    ws.serverClose(1001);
    clock.advance(1000);
    ws = ScriptedSocket.instances[1];
    ws.accept();
    ws.deliver({ v: 1, type: "error", id: ws.lastSent().id, error: { code: "forbidden", message: "grant revoked" } });
    clock.advance(5000);
    assert.deepEqual(refused, [["room:a", "forbidden"]]);
    assert.equal(ws.sent.length, 1);
    assert.equal(client.subscriptions.has("room:a"), false);
  });

  test("close() sends 1000 and does not reconnect", () => {
    const client = makeClient(clock);
    client.connect();
    const ws = ScriptedSocket.instances[0];
    ws.accept();
    client.close();
    assert.equal(ws.closedWith.code, 1000);
    assert.equal(client.state, "closed");
    assert.equal(clock.timers.size, 0);
    assert.equal(ScriptedSocket.instances.length, 1);
  });
});
