"""A TLS backend for the tests of TLS towards backends, run as its own process with
/usr/bin/python3: python's `ssl` with a certificate from tls_pki, serving either WebSocket echo
(python3-websockets, `ws`) or a raw byte echo (`raw`). It prints one line per TLS connection
with the SNI name the client sent and the ALPN protocol agreed, so that tests can see what
wslb sent."""

import argparse
import asyncio
import socket
import ssl
import threading

import websockets


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mode", choices=["ws", "raw"], default="ws")
    a = p.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = lambda sock, name, _: print(f"sni {name}" if name else "no sni", flush=True)

    async def ws_echo(ws, path):
        print(f"websocket {path} alpn {ws.transport.get_extra_info('ssl_object').selected_alpn_protocol()}",
              flush=True)
        async for m in ws:
            await ws.send(m)
        print(f"closed {ws.close_code}", flush=True)

    def raw_echo(conn):
        # Blocking, on a thread: asyncio's TLS streams end the whole connection at the peer's
        # close_notify, and this echo must answer what is still in flight after it (half-close).
        total = 0
        with conn:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    break
                total += len(data)
                conn.sendall(data)
            print(f"raw echoed {total}", flush=True)
            conn.unwrap()

    def serve_raw():
        listener = socket.create_server(("127.0.0.1", a.port))
        print("ready", flush=True)
        while True:
            sock, _ = listener.accept()
            def run(sock=sock):
                try:
                    raw_echo(ctx.wrap_socket(sock, server_side=True))
                except (OSError, ssl.SSLError) as e:
                    print(f"raw error {e}", flush=True)
            threading.Thread(target=run, daemon=True).start()

    async def serve():
        server = await websockets.serve(ws_echo, "127.0.0.1", a.port, ssl=ctx, max_size=None)
        print("ready", flush=True)
        async with server:
            await asyncio.Future()

    if a.mode == "raw":
        serve_raw()
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main()
