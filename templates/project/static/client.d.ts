// Types for client.js (wire protocol v1). Kept next to the module so editors and `tsc --noEmit`
// users get them without a build step.

export declare const PROTOCOL_VERSION: 1;
export declare const SUBPROTOCOL_JSON: "wsforge.v1.json";
export declare const AUTH_SUBPROTOCOL_PREFIX: "wsforge.auth.";

export declare const CloseAction: Readonly<{
  STOP: "stop";
  RETRY: "retry";
  RETRY_LATER: "retry_later";
  REAUTH: "reauth";
}>;
export type CloseAction = (typeof CloseAction)[keyof typeof CloseAction];
/** Error codes after which a subscribe is retried with backoff instead of dropped. */
export declare const RETRYABLE_ERRORS: ReadonlySet<string>;

/** stop: 1000 1008 4003 4400; retry later: 1013; reauth: 4001; everything else: retry. */
export declare function classifyClose(code: number): CloseAction;
/** Bytes a publish grows by on its way to subscribers. */
export declare const PUBLISH_HEADROOM: number;
/** The largest request the server answers with anything but `payload_too_large`. */
export declare function publishLimit(maxPayloadBytes: number): number;

export type Jitter = "full" | "equal" | "none";

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
  jitter?: Jitter;
}

/** Delay in ms before attempt `attempt` (0-based); full jitter is uniform in [0, min(cap, base*2^attempt)). */
export declare function backoffDelay(attempt: number, options: BackoffOptions, random?: () => number): number;

export declare class Backoff {
  constructor(options: BackoffOptions & { resetAfterMs: number; random?: () => number });
  readonly options: Required<BackoffOptions>;
  readonly resetAfterMs: number;
  attempt: number;
  openedAt: number | null;
  next(): number;
  /** For 1013: uniform in [cap/2, cap). */
  nextLater(): number;
  recordOpen(nowMs: number): void;
  recordClose(nowMs: number): void;
  reset(): void;
}

export declare class OfflineQueue<T = unknown> {
  constructor(maxSize: number);
  readonly maxSize: number;
  readonly size: number;
  /** Returns the evicted item (the oldest, or `item` when maxSize is 0), or undefined. */
  push(item: T): T | undefined;
  /** Puts items back at the head; returns what no longer fits (taken from the tail). */
  unshiftAll(items: T[]): T[];
  drain(): T[];
}

export declare const SeqVerdict: Readonly<{ DELIVER: "deliver"; DUPLICATE: "duplicate"; GAP: "gap" }>;
export type SeqVerdict = (typeof SeqVerdict)[keyof typeof SeqVerdict];

export interface ResumePoint {
  since_seq?: number;
  epoch?: string;
}

export declare class SeqTracker {
  resumeFrom(channel: string): ResumePoint;
  lastSeq(channel: string): number | null;
  subscribed(channel: string, response: { seq?: number; epoch?: string | null; recovered?: boolean }): void;
  resync(channel: string, event: { seq?: number; epoch?: string | null }): void;
  accept(channel: string, seq: number): SeqVerdict;
  forget(channel: string): void;
}

export interface EnvelopeNames {
  v: string;
  type: string;
  action: string;
  id: string;
  channel: string;
  payload: string;
  seq: string;
  ts: string;
  sender: string;
  error: string;
}
export declare const DEFAULT_ENVELOPE: Readonly<EnvelopeNames>;

export interface Envelope {
  v?: number;
  type?: "request" | "response" | "event" | "error";
  action?: string;
  id?: string | null;
  channel?: string;
  payload?: unknown;
  seq?: number;
  ts?: number;
  sender?: string | null;
  error?: { code: string; message: string; retry_after_ms?: number };
  [extra: string]: unknown;
}

export declare function encodeEnvelope(fields: Envelope, names?: EnvelopeNames): Record<string, unknown>;
export declare function decodeEnvelope(wire: unknown, names?: EnvelopeNames): Envelope | null;

export type TokenTransport = "subprotocol" | "query" | "cookie" | "none";

/**
 * How envelopes become frames. `JSON_CODEC` is the default; protobuf projects ship
 * `static/protobuf.js`, whose `protobufCodec(protobuf)` returns one for `wsforge.v1.protobuf`.
 */
export interface Codec {
  /** Offered in the handshake (the token entry, if any, follows it). */
  readonly subprotocol: string;
  /** Binary frames (the socket's binaryType becomes "arraybuffer"). */
  readonly binary: boolean;
  /** The codec's field names are its own: the `envelope` option's renames do not apply. */
  readonly fixedFieldNames: boolean;
  /** A wire object (envelope names applied) as one frame. */
  serialize(wire: Record<string, unknown>): string | Uint8Array;
  /** One frame back into a wire object; throws on undecodable data. */
  parse(data: string | ArrayBuffer | Uint8Array): Record<string, unknown>;
}

export declare const JSON_CODEC: Codec;

export declare function handshakeFor(
  url: string,
  token: string | null | undefined,
  tokenTransport: TokenTransport,
  subprotocol?: string,
): { url: string; protocols: string[] };

export declare class WsforgeError extends Error {
  constructor(code: string, message: string, extra?: { retryAfterMs?: number | null; action?: string | null });
  /** A contract error code, or client-side: timeout, connection_lost, offline_queue_full, stopped, unsubscribed. */
  readonly code: string;
  readonly retryAfterMs: number | null;
  readonly action: string | null;
}

export type ClientState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface ClientEvents {
  state: { state: ClientState };
  open: { protocol: string };
  close: { code: number; reason: string; action: CloseAction; wasOpen: boolean };
  reconnecting: { attempt: number; delayMs: number; action: CloseAction };
  message: { channel: string; seq: number; ts: number; sender: string | null; payload: unknown };
  presence: { channel: string; kind: "join" | "leave"; user: string };
  resync: { channel: string; reason: string; seq: number; epoch: string | null };
  gap: { channel: string; seq: number };
  /** A resubscribe was definitively refused (e.g. forbidden): the client no longer follows `channel`. */
  subscriptionRefused: { channel: string; error: WsforgeError };
  /** The application's backend subscribed this user (server API): followed and resumed like `subscribe()`. */
  subscriptionAdded: {
    channel: string;
    seq: number;
    epoch: string | null;
    presence: { user: string; connections: number }[] | null;
  };
  /** The application's backend removed the subscription (server API): no more events of `channel`. */
  subscriptionRemoved: { channel: string; reason: string };
  event: { action: string; channel: string; payload: unknown };
  error: { error: Error };
  stopped: { code: number; reason: string };
}

export interface ClientOptions {
  token?: string | null;
  /** Called after close 4001 (token expired); without it the client stops. */
  getToken?: () => Promise<string>;
  tokenTransport?: TokenTransport;
  envelope?: Partial<EnvelopeNames>;
  /** Frame codec; default JSON_CODEC (text frames, `wsforge.v1.json`). */
  codec?: Codec;
  requestTimeoutMs?: number;
  /** The server's max_payload_bytes: bigger requests are rejected locally with payload_too_large. */
  maxPayloadBytes?: number;
  /** Application-level ping interval; 0 (default) relies on the server's heartbeat. */
  pingIntervalMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  jitter?: Jitter;
  resetAfterMs?: number;
  offlineQueueSize?: number;
  random?: () => number;
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  /** A WebSocket constructor (tests, Node); defaults to globalThis.WebSocket. */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

export interface SubscribeResult {
  seq: number;
  epoch: string;
  recovered: boolean;
  replayed: number;
  presence?: { user: string; connections: number }[];
}

export declare class WsforgeClient extends EventTarget {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  token: string | null;
  readonly state: ClientState;
  readonly backoff: Backoff;
  readonly queue: OfflineQueue;
  readonly seqs: SeqTracker;
  on<K extends keyof ClientEvents>(type: K, listener: (detail: ClientEvents[K]) => void): () => void;
  connect(): void;
  close(reason?: string): void;
  request<T = unknown>(
    action: string,
    options?: { channel?: string; payload?: unknown; timeoutMs?: number; extra?: Record<string, unknown> },
  ): Promise<T>;
  subscribe(channel: string): Promise<SubscribeResult>;
  unsubscribe(channel: string): Promise<unknown>;
  publish(channel: string, payload: unknown, options?: { msgId?: string }): Promise<{ seq: number }>;
  presence(channel: string): Promise<{ members: { user: string; connections: number }[] }>;
  history(
    channel: string,
    sinceSeq: number,
    limit?: number,
  ): Promise<{ messages: Envelope[]; epoch: string; recovered: boolean }>;
  ping(): Promise<{ ts: number }>;
  refreshAuth(token: string): Promise<{ exp: number }>;
  rpc<T = unknown>(name: string, payload?: unknown): Promise<T>;
  lastSeq(channel: string): number | null;
}
