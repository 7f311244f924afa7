"""The wire protocol, free of I/O: frames, messages and argument schemas.

A frame is a 4-byte big-endian length followed by that many bytes holding one msgpack map.
See docs/protocol.md for the full description.
"""
