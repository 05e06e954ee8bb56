"""A uvloop bug, reduced: a transport freed while its write_eof() shutdown is pending crashes.

uvloop's UVStream keeps the libuv `uv_shutdown_t` request inside the transport object and holds
no reference to the object for it. If the last reference goes away while the request is still
pending (write_eof() was called and the transport is not reading, so libuv holds no reference
either), the transport is deallocated: its __dealloc__ closes the handle, and when libuv then
cancels the shutdown it calls back through the freed request — a segfault here, "double free
or corruption" in a busier process (the API relay left exactly such transports to the
garbage collector; see worker/api_relay.py). Plain asyncio survives the same code.

    .venv/bin/python bench/uvloop_shutdown_crash.py           # uvloop: killed by SIGSEGV
    .venv/bin/python bench/uvloop_shutdown_crash.py close     # close() first: survives
    .venv/bin/python bench/uvloop_shutdown_crash.py asyncio   # plain asyncio: survives

Seen with uvloop 0.23.0 on CPython 3.11.7. The workaround is to never let such a transport go
unreferenced before close() (after close(), uvloop holds a reference until libuv is done).
"""

import asyncio
import socket
import sys

import uvloop


async def main() -> None:
    a, b = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=a)
    transport.pause_reading()  # libuv no longer holds the reader's reference
    transport.write_eof()  # uv_shutdown(): its request lives inside the transport object
    if "close" in sys.argv:
        transport.close()
    del transport  # the last reference: freed with the shutdown still pending
    await asyncio.sleep(0.01)  # libuv cancels the shutdown and calls back into freed memory
    b.close()
    print("survived")


if __name__ == "__main__":
    if "asyncio" in sys.argv:
        asyncio.run(main())
    else:
        print(f"uvloop {uvloop.__version__}", flush=True)
        uvloop.run(main())
