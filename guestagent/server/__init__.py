"""The agent daemon: listeners -> connections -> dispatch -> policy gate -> effects.

Read in this order: `agent.py` (composition root), then `guestagent.rpc` (connections, limits
and the one pipeline every operation goes through, shared with the console), `ops/` (the
operations). `limits.py` fits the connection cap to the fd limit.
"""
