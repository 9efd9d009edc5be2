#!/usr/bin/env python3
"""Small SMTP responders for the lab, standard library only.

usage: responders.py ADDR:PORT=MODE [...]
  hangup      greet, read EHLO, close without answering (4.4.318)
  odd         greet, answer EHLO with 354 (a reply that makes no sense: other)
  plain       a minimal well-behaved ESMTP server without STARTTLS (used to "fix" a fault)
"""
import asyncio
import sys

MAX_LINE = 4096


async def session(mode, reader, writer):
    send = writer.write
    try:
        send(b"220 lab.test ESMTP mailflow lab responder\r\n")
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line or len(line) > MAX_LINE:
                break
            verb = line.strip().split(b" ", 1)[0].upper()
            if mode == "hangup":
                break
            if verb in (b"EHLO", b"HELO"):
                send(b"354 3.0.0 go ahead\r\n" if mode == "odd" else b"250-lab.test\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                send(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:
                send(b"502 5.5.2 not here\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def main(specs):
    servers = []
    for spec in specs:
        addr, mode = spec.split("=")
        host, port = addr.rsplit(":", 1)
        srv = await asyncio.start_server(lambda r, w, m=mode: session(m, r, w), host, int(port), reuse_address=True)
        servers.append(srv)
        print(f"{addr} {mode}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1:]))
