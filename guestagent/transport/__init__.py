"""Byte-stream transports: AF_VSOCK (production), virtio-serial, and unix sockets (tests).

One URI syntax selects them everywhere (`uri.parse_uri`). Listeners hand each connection's
bytes to a protocol factory; they know nothing about frames or operations.
"""
