// Oversized requests (issue 19, item 9): refused locally with payload_too_large, and a request
// the server refused with close 1009 is rejected, never resent after the reconnect.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";

import { WsforgeClient, WsforgeError, publishLimit } from "../../static/client.js";

class Timers {
  constructor() {
    this.timers = new Map();
    this.next = 1;
  }
  setTimeout = (fn, ms) => {
    const handle = this.next++;
    this.timers.set(handle, { fn, ms });
    return handle;
  };
  clearTimeout = (handle) => {
    this.timers.delete(handle);
  };
  /** Fire every pending timer once (reconnect delays, not request timeouts, in these tests). */
  fireReconnects() {
    for (const [handle, timer] of [...this.timers]) {
      if (timer.ms < 2000) {
        this.timers.delete(handle);
        timer.fn();
      }
    }
  }
}

class Socket {
  static instances = [];
  constructor() {
    this.sent = [];
    this.protocol = "";
    Socket.instances.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.onclose?.({ code, reason });
  }
  accept() {
    this.onopen?.({});
  }
}

function makeClient(timers, options = {}) {
  return new WsforgeClient("ws://127.0.0.1:1/ws", {
    WebSocket: Socket,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    now: () => 0,
    random: () => 0.5,
    backoffBaseMs: 100,
    backoffCapMs: 1000,
    requestTimeoutMs: 5000,
    ...options,
  });
}

describe("oversized requests", () => {
  let timers;
  beforeEach(() => {
    Socket.instances = [];
    timers = new Timers();
  });

  test("a publish over the server's limit is rejected locally and never sent", async () => {
    const client = makeClient(timers, { maxPayloadBytes: 4096 });
    client.connect();
    const ws = Socket.instances[0];
    ws.accept();
    const big = client.publish("room:a", { big: "x".repeat(70000) });
    await assert.rejects(big, (err) => err instanceof WsforgeError && err.code === "payload_too_large");
    assert.equal(ws.sent.length, 0);
    const small = client.publish("room:a", { text: "hi" });
    assert.equal(ws.sent.length, 1);
    ws.onmessage?.({ data: JSON.stringify({ v: 1, type: "response", id: ws.sent[0].id, payload: { seq: 1 } }) });
    assert.deepEqual(await small, { seq: 1 });
  });

  test("the limit leaves room for what the server adds to an event", () => {
    assert.equal(publishLimit(65536), 65536 - 256);
    assert.equal(publishLimit(300), 150);
  });

  test("a request the server refused with 1009 is rejected, not resent after the reconnect", async () => {
    const client = makeClient(timers); // no local limit: the server's is smaller than we think
    client.connect();
    let ws = Socket.instances[0];
    ws.accept();
    const big = client.publish("room:a", { big: "x".repeat(70000) });
    const small = client.publish("room:a", { text: "hi" });
    ws.close(1009, "message too big");
    await assert.rejects(big, (err) => err.code === "payload_too_large");
    timers.fireReconnects();
    ws = Socket.instances[1];
    ws.accept();
    assert.deepEqual(
      ws.sent.map((frame) => frame.payload),
      [{ text: "hi" }],
    );
    ws.onmessage?.({ data: JSON.stringify({ v: 1, type: "response", id: ws.sent[0].id, payload: { seq: 1 } }) });
    assert.deepEqual(await small, { seq: 1 });
  });
});
