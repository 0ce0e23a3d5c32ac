// A Socket.IO server as a peer that `talk-peers fanout --peer socketio`
// measures talk against (bench/scripts/run-socketio.sh runs it).
//
//   node server.js [PORT]      (or PORT in the environment; 0 or none: any free port)
//
// It listens on 127.0.0.1 and prints `listening on http://127.0.0.1:PORT`
// once it accepts connections. Clients use Socket.IO's HTTP long-polling
// transport only (no WebSocket upgrade) and name their channel in the
// handshake's query (`/socket.io/?EIO=4&transport=polling&channel=NAME`);
// each socket joins the room of that name when it connects. A publisher
// posts a message's text to `POST /pub/NAME` on the same HTTP server, which
// emits it to the room as a `message` event and answers 200 once it has.
//
// Everything else is Socket.IO's default: the in-memory adapter in this one
// process, pingInterval 25 s and pingTimeout 20 s (a client must answer each
// ping with a pong), no connection state recovery; Node's HTTP server with
// its defaults, but for the listen backlog, 4096 as in the Nchan peer's
// nginx.conf, which absorbs the ramp's bursts of new connections.
// SOCKETIO_PING_INTERVAL_MS shortens the ping interval for the bench's
// smoke test, so that a run of seconds sees pings; measured runs leave it unset.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

// A channel name: what the bench makes (`bf` and a run id), nothing that
// needs escaping.
const CHANNEL = /^\w{1,64}$/;
// The largest message text taken by the publishing endpoint.
const MAX_MESSAGE_BYTES = 64 * 1024;

function parsePort(text) {
  const port = Number(text ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`not a port: ${text}`);
  }
  return port;
}

function answer(response, status, text) {
  response.writeHead(status, {
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Length": Buffer.byteLength(text),
  });
  response.end(text);
}

const port = parsePort(process.argv[2] ?? process.env.PORT);
const options = { transports: ["polling"], serveClient: false };
if (process.env.SOCKETIO_PING_INTERVAL_MS) {
  options.pingInterval = Number(process.env.SOCKETIO_PING_INTERVAL_MS);
}

// Socket.IO takes the requests under /socket.io/ and hands every other one
// to this handler: the publishing endpoint.
const httpServer = http.createServer((request, response) => {
  const match = /^\/pub\/([^/?]+)$/.exec(request.url);
  if (!match) {
    answer(response, 404, "not found\n");
    return;
  }
  if (request.method !== "POST") {
    answer(response, 405, "POST a message's text\n");
    return;
  }
  const channel = match[1];
  if (!CHANNEL.test(channel)) {
    answer(response, 400, "bad channel name\n");
    return;
  }
  const chunks = [];
  let length = 0;
  let refused = false;
  request.on("data", (chunk) => {
    length += chunk.length;
    if (length > MAX_MESSAGE_BYTES) {
      if (!refused) {
        refused = true;
        answer(response, 413, "message too large\n");
      }
      return;
    }
    chunks.push(chunk);
  });
  request.on("end", () => {
    if (refused) {
      return;
    }
    // The emit writes the event to every socket of the room before it
    // returns: to the held poll's answer where there is one, to the
    // socket's buffer for its next poll otherwise. So the 200 says the
    // message is on its way to every member.
    io.to(channel).emit("message", Buffer.concat(chunks, length).toString("utf8"));
    answer(response, 200, "ok");
  });
});

const io = new Server(httpServer, options);

io.on("connection", (socket) => {
  const channel = socket.handshake.query.channel;
  if (typeof channel !== "string" || !CHANNEL.test(channel)) {
    socket.disconnect(true);
    return;
  }
  // Socket.IO queued the socket's CONNECT acknowledgement just before
  // calling this, in the same turn of the event loop: a publish that the
  // client sends after reading the acknowledgement finds it in the room.
  socket.join(channel);
});

httpServer.listen({ host: "127.0.0.1", port, backlog: 4096 }, () => {
  console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
});
