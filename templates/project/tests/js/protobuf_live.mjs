// WsforgeClient with the protobuf codec against a live server, run by tests/test_protobuf_client.py
// (not by `node --test`: it needs the server the Python test starts). Real packages: protobufjs
// and the `ws` WebSocket client, installed by the test into NODE_DEPS. Prints one JSON result.
import { createRequire } from "node:module";

import { WsforgeClient, WsforgeError } from "../../static/client.js";
import { SUBPROTOCOL_PROTOBUF, protobufCodec } from "../../static/protobuf.js";

const require = createRequire(`${process.env.NODE_DEPS}/`);
const protobuf = require("protobufjs");
const WebSocket = require("ws");

const deadline = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, Number(process.env.WS_TIMEOUT_MS ?? 20000));

const channel = process.env.WS_CHANNEL;
const codec = protobufCodec(protobuf);
const client = new WsforgeClient(process.env.WS_URL, { token: process.env.WS_TOKEN, codec, WebSocket });
const received = new Promise((resolve) => client.on("message", (detail) => resolve(detail)));
const opened = new Promise((resolve) => client.on("open", (detail) => resolve(detail.protocol)));
client.connect();
const protocol = await opened;
const subscribed = await client.subscribe(channel);
const ack = await client.publish(channel, { px: 101.5, venue: "Zürich", tags: ["a", null] });
const message = await received;
const history = await client.history(channel, 0);
let refused = null;
try {
  await client.subscribe("nope:x");
} catch (error) {
  refused = error instanceof WsforgeError ? error.code : String(error);
}
client.close();
clearTimeout(deadline);
console.log(JSON.stringify({ protocol, subscribed, seq: ack.seq, message, history, refused, expected: SUBPROTOCOL_PROTOBUF }));
