// Node socket.io peer: the official `socket.io` server, WebSocket transport only (as the Socket.IO
// subjects are driven), rooms and acks are the library's own (socket.join, io.to(room).emit, ack
// callbacks). The JWT (HS256, exp) is verified at the handshake with node:crypto like the `ws` peer,
// so connecting costs comparable work. Its own heartbeat (pingInterval/pingTimeout) is the
// workload's. Scale-out is not offered (the python-socketio peer's Redis manager covers that).
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const { Server } = require('socket.io');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? acc.concat([[a.slice(2), all[i + 1]]]) : acc), [])
);
const host = args.host || '127.0.0.1';
const port = Number(args.port);
const secret = args['jwt-secret'] || '';
const heartbeatMs = Number(args.heartbeat || 20) * 1000;

function b64url(buf) {
  return buf.toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function tokenOk(token) {
  if (!secret) return true;
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

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(server, {
  transports: ['websocket'],
  pingInterval: heartbeatMs,
  pingTimeout: heartbeatMs,
  perMessageDeflate: false,
  serveClient: false,
});
io.use((socket, next) => {
  const token = socket.handshake.query.access_token || (socket.handshake.auth || {}).token;
  next(tokenOk(token) ? undefined : new Error('invalid token'));
});
io.on('connection', (socket) => {
  socket.on('subscribe', (data, ack) => {
    socket.join(data.channel);
    if (typeof ack === 'function') ack({});
  });
  socket.on('publish', (data, ack) => {
    io.to(data.channel).emit('message', { channel: data.channel, payload: data.payload });
    if (typeof ack === 'function') ack({});
  });
  socket.on('ping', (data, ack) => {
    if (typeof ack === 'function') ack({});
  });
});
server.listen({ host, port, backlog: 4096 }, () => console.log('PID ' + process.pid));
