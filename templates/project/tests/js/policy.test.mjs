// Pure parts of static/client.js: backoff, offline queue, close codes, seq bookkeeping.
// Run with `node --test tests/js/`; tests/test_browser_js.py runs this from pytest.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  AUTH_SUBPROTOCOL_PREFIX,
  Backoff,
  CloseAction,
  DEFAULT_ENVELOPE,
  OfflineQueue,
  SUBPROTOCOL_JSON,
  SeqTracker,
  SeqVerdict,
  backoffDelay,
  classifyClose,
  decodeEnvelope,
  encodeEnvelope,
  handshakeFor,
} from "../../static/client.js";

/** Deterministic PRNG (mulberry32) so distribution checks never flake. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("backoffDelay", () => {
  const opts = { baseMs: 100, capMs: 5000 };

  test("without jitter it doubles from base and stops at the cap", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 10].map((n) => backoffDelay(n, { ...opts, jitter: "none" }));
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  });

  test("full jitter stays in [0, min(cap, base*2^n))", () => {
    for (let n = 0; n < 12; n += 1) {
      const ceiling = Math.min(5000, 100 * 2 ** n);
      assert.equal(backoffDelay(n, opts, () => 0), 0);
      const top = backoffDelay(n, opts, () => 0.999999);
      assert.ok(top < ceiling && top > ceiling * 0.999, `attempt ${n}: ${top}`);
    }
  });

  test("huge attempt numbers are capped, never Infinity or NaN", () => {
    assert.equal(backoffDelay(10_000, { ...opts, jitter: "none" }), 5000);
    assert.equal(backoffDelay(-3, { ...opts, jitter: "none" }), 100);
    assert.ok(Number.isFinite(backoffDelay(1e9, opts, () => 0.5)));
  });

  test("equal jitter keeps at least half the window", () => {
    assert.equal(backoffDelay(3, { ...opts, jitter: "equal" }, () => 0), 400);
    assert.ok(backoffDelay(3, { ...opts, jitter: "equal" }, () => 0.999999) < 800);
  });

  test("full jitter is uniform over its window", () => {
    const random = seeded(42);
    const samples = 20000;
    const window = 800; // attempt 3
    const buckets = new Array(10).fill(0);
    let sum = 0;
    for (let i = 0; i < samples; i += 1) {
      const d = backoffDelay(3, opts, random);
      assert.ok(d >= 0 && d < window);
      buckets[Math.floor((d / window) * 10)] += 1;
      sum += d;
    }
    const mean = sum / samples;
    assert.ok(Math.abs(mean - window / 2) < window * 0.02, `mean ${mean}`);
    // Chi-square with 9 degrees of freedom; 27.88 is the 0.999 quantile.
    const expected = samples / 10;
    const chi2 = buckets.reduce((acc, b) => acc + (b - expected) ** 2 / expected, 0);
    assert.ok(chi2 < 27.88, `chi2 ${chi2} buckets ${buckets}`);
  });
});

describe("Backoff", () => {
  const make = () => new Backoff({ baseMs: 100, capMs: 1000, jitter: "none", resetAfterMs: 5000 });

  test("attempts grow with each next() up to the cap", () => {
    const b = make();
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
    assert.equal(b.attempt, 5);
  });

  test("a short-lived connection does not reset the schedule", () => {
    const b = make();
    b.next();
    b.next();
    b.recordOpen(1000);
    b.recordClose(1000 + 4999);
    assert.equal(b.next(), 400);
  });

  test("a connection that stayed up for resetAfterMs resets the schedule", () => {
    const b = make();
    b.next();
    b.next();
    b.next();
    b.recordOpen(1000);
    b.recordClose(6000);
    assert.equal(b.attempt, 0);
    assert.equal(b.next(), 100);
  });

  test("a close without an open (handshake refused) never resets", () => {
    const b = make();
    b.next();
    b.recordClose(1e12);
    assert.equal(b.attempt, 1);
  });

  test("retry-later waits between half the cap and the cap", () => {
    const low = new Backoff({ baseMs: 100, capMs: 1000, resetAfterMs: 1, random: () => 0 });
    const high = new Backoff({ baseMs: 100, capMs: 1000, resetAfterMs: 1, random: () => 0.999999 });
    assert.equal(low.nextLater(), 500);
    assert.ok(high.nextLater() < 1000);
  });

  test("rejects a zero base or cap", () => {
    assert.throws(() => new Backoff({ baseMs: 0, capMs: 1, resetAfterMs: 1 }), RangeError);
  });
});

describe("OfflineQueue", () => {
  test("keeps at most maxSize items and evicts the oldest", () => {
    const q = new OfflineQueue(3);
    assert.equal(q.push("a"), undefined);
    assert.equal(q.push("b"), undefined);
    assert.equal(q.push("c"), undefined);
    assert.equal(q.push("d"), "a");
    assert.equal(q.size, 3);
    assert.deepEqual(q.drain(), ["b", "c", "d"]);
    assert.equal(q.size, 0);
  });

  test("a zero-size queue refuses everything", () => {
    const q = new OfflineQueue(0);
    assert.equal(q.push("a"), "a");
    assert.equal(q.size, 0);
  });

  test("requeued in-flight items go first, overflow leaves from the tail", () => {
    const q = new OfflineQueue(3);
    q.push("new1");
    q.push("new2");
    const evicted = q.unshiftAll(["old1", "old2"]);
    assert.deepEqual(evicted, ["new2"]);
    assert.deepEqual(q.drain(), ["old1", "old2", "new1"]);
  });

  test("never grows past its bound under a burst", () => {
    const q = new OfflineQueue(50);
    let evicted = 0;
    for (let i = 0; i < 10_000; i += 1) if (q.push(i) !== undefined) evicted += 1;
    assert.equal(q.size, 50);
    assert.equal(evicted, 10_000 - 50);
    assert.equal(q.drain()[0], 10_000 - 50);
  });

  test("rejects a negative or fractional size", () => {
    assert.throws(() => new OfflineQueue(-1), RangeError);
    assert.throws(() => new OfflineQueue(1.5), RangeError);
  });
});

describe("classifyClose", () => {
  const table = {
    [CloseAction.STOP]: [1000, 1008, 4003, 4400],
    [CloseAction.RETRY_LATER]: [1013],
    [CloseAction.REAUTH]: [4001],
    [CloseAction.RETRY]: [1001, 1006, 1009, 1011, 4008, 4009, 4000, 1012, 4999],
  };
  for (const [action, codes] of Object.entries(table)) {
    for (const code of codes) {
      test(`${code} -> ${action}`, () => assert.equal(classifyClose(code), action));
    }
  }
});

describe("SeqTracker", () => {
  test("a first subscription starts at the server's seq and drops older events", () => {
    const t = new SeqTracker();
    t.subscribed("room:a", { seq: 5, epoch: "e1", recovered: false });
    assert.equal(t.accept("room:a", 5), SeqVerdict.DUPLICATE);
    assert.equal(t.accept("room:a", 6), SeqVerdict.DELIVER);
    assert.equal(t.lastSeq("room:a"), 6);
  });

  test("resume asks for what came after the last delivered seq, with the epoch", () => {
    const t = new SeqTracker();
    assert.deepEqual(t.resumeFrom("room:a"), {});
    t.subscribed("room:a", { seq: 0, epoch: "e1" });
    t.accept("room:a", 1);
    t.accept("room:a", 2);
    assert.deepEqual(t.resumeFrom("room:a"), { since_seq: 2, epoch: "e1" });
  });

  test("a recovered resume keeps the position so the replay is delivered once", () => {
    const t = new SeqTracker();
    t.subscribed("room:a", { seq: 0, epoch: "e1" });
    t.accept("room:a", 1);
    t.subscribed("room:a", { seq: 4, epoch: "e1", recovered: true });
    const verdicts = [2, 3, 3, 4, 2, 5].map((s) => t.accept("room:a", s));
    assert.deepEqual(verdicts, ["deliver", "deliver", "duplicate", "deliver", "duplicate", "deliver"]);
  });

  test("a jump forward is a gap, delivered and remembered", () => {
    const t = new SeqTracker();
    t.subscribed("feed:x", { seq: 10 });
    assert.equal(t.accept("feed:x", 13), SeqVerdict.GAP);
    assert.equal(t.accept("feed:x", 14), SeqVerdict.DELIVER);
  });

  test("resync and a changed epoch restart from the server's position", () => {
    const t = new SeqTracker();
    t.subscribed("room:a", { seq: 50, epoch: "e1" });
    t.resync("room:a", { seq: 3, epoch: "e2" });
    assert.equal(t.accept("room:a", 4), SeqVerdict.DELIVER);
    t.subscribed("room:a", { seq: 1, epoch: "e3", recovered: true });
    assert.equal(t.accept("room:a", 2), SeqVerdict.DELIVER);
  });

  test("channels are tracked independently", () => {
    const t = new SeqTracker();
    t.subscribed("a", { seq: 1 });
    t.subscribed("b", { seq: 100 });
    assert.equal(t.accept("a", 2), SeqVerdict.DELIVER);
    assert.equal(t.accept("b", 2), SeqVerdict.DUPLICATE);
    t.forget("a");
    assert.equal(t.lastSeq("a"), null);
  });
});

describe("handshake and envelope", () => {
  test("the token rides in a subprotocol entry after the codec", () => {
    assert.deepEqual(handshakeFor("ws://h/ws", "a.b.c", "subprotocol"), {
      url: "ws://h/ws",
      protocols: [SUBPROTOCOL_JSON, `${AUTH_SUBPROTOCOL_PREFIX}a.b.c`],
    });
  });

  test("query transport appends access_token", () => {
    assert.equal(handshakeFor("ws://h/ws", "t+1", "query").url, "ws://h/ws?access_token=t%2B1");
    assert.equal(handshakeFor("ws://h/ws?x=1", "t", "query").url, "ws://h/ws?x=1&access_token=t");
  });

  test("cookie mode and no token add nothing", () => {
    assert.deepEqual(handshakeFor("ws://h/ws", "t", "cookie").protocols, [SUBPROTOCOL_JSON]);
    assert.deepEqual(handshakeFor("ws://h/ws", null, "subprotocol").protocols, [SUBPROTOCOL_JSON]);
  });

  test("renamed wire fields round-trip and undefined fields are left out", () => {
    const names = { ...DEFAULT_ENVELOPE, type: "t", payload: "data" };
    const wire = encodeEnvelope({ v: 1, type: "request", action: "ping", id: "1", channel: undefined }, names);
    assert.deepEqual(wire, { v: 1, t: "request", action: "ping", id: "1" });
    assert.deepEqual(decodeEnvelope({ t: "event", data: [1], extra: true }, names), { type: "event", payload: [1] });
    assert.equal(decodeEnvelope([1, 2], names), null);
    assert.equal(decodeEnvelope("x", names), null);
  });
});
