// Real socket.io-client sessions with the default transports (HTTP long-polling first, then
// the upgrade to WebSocket): `node client.js URL COUNT`. Prints one JSON line: per session
// whether it connected, the backend ids that acknowledged its messages over polling and over
// WebSocket, and whether it upgraded.
//
// In Node, engine.io-client keeps cookies between polling requests only with
// withCredentials: true (what a browser does for same-origin requests), and does not send them
// on the WebSocket handshake, which a browser does; so on "open" the session's cookies are
// copied into the handshake's headers, as a browser would send them.
const { io } = require("socket.io-client");

const url = process.argv[2];
const count = Number(process.argv[3]);

function browserLikeCookies(engine) {
  engine.on("open", () => {
    const jar = engine.transport.cookieJar;
    if (!jar) return;
    const pairs = [];
    jar.cookies.forEach((cookie, name) => pairs.push(`${name}=${cookie.value}`));
    if (pairs.length) engine.opts.extraHeaders = { cookie: pairs.join("; ") };
  });
}

function upgraded(engine, ms) {
  return new Promise((resolve) => {
    if (engine.transport.name === "websocket") return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    engine.once("upgrade", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function session(i) {
  const out = { i, connected: false, polling_ids: [], websocket_ids: [], upgraded: false };
  const socket = io(url, { forceNew: true, withCredentials: true, reconnection: false,
                           timeout: 10000 });
  browserLikeCookies(socket.io.engine);
  try {
    await new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    });
    out.connected = true;
    const upgrade = upgraded(socket.io.engine, 15000);
    for (let n = 0; n < 3; n++) {
      const r = await socket.timeout(10000).emitWithAck("hello", n);
      (r.transport === "websocket" ? out.websocket_ids : out.polling_ids).push(r.id);
    }
    out.upgraded = await upgrade;
    for (let n = 3; n < 6; n++) {
      const r = await socket.timeout(10000).emitWithAck("hello", n);
      (r.transport === "websocket" ? out.websocket_ids : out.polling_ids).push(r.id);
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
  }
  socket.close();
  return out;
}

Promise.all(Array.from({ length: count }, (_, i) => session(i))).then((results) => {
  console.log(JSON.stringify(results));
  process.exit(0);
});
