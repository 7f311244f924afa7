"""The agent daemon: listeners -> connections -> dispatch -> policy gate -> effects.

Read in this order: `agent.py` (composition root), `connection.py` (frames in, replies out),
`dispatch.py` (the one pipeline every operation goes through), `ops/` (the operations).
"""
