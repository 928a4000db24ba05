// Types for protobuf.js: the Protocol Buffers codec of WsforgeClient (see client.d.ts `Codec`).
import type { Codec } from "./client.js";

/** The text of proto/<package>/wire.proto, embedded when the project was rendered. */
export declare const WIRE_PROTO: string;
export declare const SUBPROTOCOL_PROTOBUF: "wsforge.v1.protobuf";

/** The protobufjs module (full build: it parses .proto text), e.g. `import protobuf from "protobufjs"`. */
export interface ProtobufJs {
  parse(source: string, options?: { keepCase?: boolean }): { root: { lookupType(name: string): unknown } };
}

/** A codec sending each envelope as one `Envelope` message; payloads as UTF-8 JSON in its bytes field. */
export declare function protobufCodec(protobuf: ProtobufJs): Codec & { readonly subprotocol: "wsforge.v1.protobuf" };
