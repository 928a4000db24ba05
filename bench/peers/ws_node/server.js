// Node `ws` peer: a room is a Set, each message is encoded once into a Buffer and sent to every
// member with ws.send (the broadcast pattern of ws's README). Heartbeat is the README's
// ping/terminate interval. JWT (HS256, exp) is verified at the upgrade with node:crypto, so the
// handshake does the same work as the Python peers'. Scale-out bridges rooms over Redis pub/sub.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const { WebSocketServer } = require('ws');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? acc.concat([[a.slice(2), all[i + 1]]]) : acc), [])
);
const host = args.host || '127.0.0.1';
const port = Number(args.port);
const secret = args['jwt-secret'] || '';
const heartbeatMs = Number(args.heartbeat || 20) * 1000;
const rooms = new Map();

function b64url(buf) {
  return buf.toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function tokenOk(url) {
  if (!secret) return true;
  const q = url.indexOf('?');
  const token = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get('access_token');
  if (!token) return false;
  const parts = token.split('.');
  if (parts.length !== 3) return false;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  } catch (e) {
    return false;
  }
  if (header.alg !== 'HS256' || typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) return false;
  const mac = b64url(crypto.createHmac('sha256', secret).update(parts[0] + '.' + parts[1]).digest());
  return mac.length === parts[2].length && crypto.timingSafeEqual(Buffer.from(mac), Buffer.from(parts[2]));
}

function response(req) {
  return JSON.stringify({ v: 1, type: 'response', action: req.action, id: req.id, payload: {} });
}

function deliver(channel, data) {
  const room = rooms.get(channel);
  if (!room) return;
  for (const member of room) member.send(data, { binary: false });
}

let pub = null;
let sub = null;

async function main() {
  if (args.redis) {
    const { createClient } = require('redis');
    pub = createClient({ url: args.redis });
    sub = pub.duplicate();
    await pub.connect();
    await sub.connect();
  }
  const server = http.createServer((req, res) => {
    res.writeHead(404);
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    if (!tokenOk(req.url)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 14\r\n\r\ninvalid token\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  wss.on('connection', (ws) => {
    ws.isAlive = true;
    ws.joined = [];
    ws.on('pong', () => { ws.isAlive = true; });
    ws.on('message', (raw, isBinary) => {
      const req = JSON.parse(raw);
      if (req.action === 'publish') {
        const data = Buffer.from(JSON.stringify({ v: 1, type: 'event', action: 'message', channel: req.channel, payload: req.payload }));
        if (pub) pub.publish('bench:' + req.channel, data);
        else deliver(req.channel, data);
      } else if (req.action === 'subscribe') {
        let room = rooms.get(req.channel);
        if (!room) {
          room = new Set();
          rooms.set(req.channel, room);
          if (sub) sub.subscribe('bench:' + req.channel, (data) => deliver(req.channel, Buffer.from(data)), true);
        }
        room.add(ws);
        ws.joined.push(req.channel);
      }
      ws.send(response(req));
    });
    ws.on('close', () => {
      for (const channel of ws.joined) {
        const room = rooms.get(channel);
        if (room) room.delete(ws);
      }
    });
  });
  const interval = setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) { ws.terminate(); continue; }
      ws.isAlive = false;
      ws.ping();
    }
  }, heartbeatMs);
  wss.on('close', () => clearInterval(interval));
  server.listen({ host, port, backlog: 4096 }, () => console.log('PID ' + process.pid));
}

main().catch((err) => { console.error(err); process.exit(1); });
