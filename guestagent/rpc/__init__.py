"""Serving operations over connections, for any service: the agent, its debug console, and
further listeners.

`operation` (what an operation is), `dispatch` (the one pipeline: prepare -> decide ->
effect -> commit), `host` (what a connection needs from its service: `ConnectionHost`, and
`ConnectionLimits`), `pool` (a listener's connections: cap, deadlines, shutdown),
`connection` (framing, admission, when to read), `replies` (reply writing and the host's
pace), `requests` (request tasks under a per-connection TaskGroup).
"""
