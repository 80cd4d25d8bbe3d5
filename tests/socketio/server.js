// A socket.io 4 server as a backend: `node server.js PORT ID`. Acknowledges every "hello" with
// its id and the transport the message came over, so a client can see which backend served
// each message of its session.
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const id = process.argv[3];
const io = new Server(port);
io.on("connection", (socket) => {
  socket.on("hello", (n, ack) => ack({ id, n, transport: socket.conn.transport.name }));
});
console.log(`socket.io backend ${id} listening on ${port}`);
