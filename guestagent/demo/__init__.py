"""The end-to-end demo: a busybox layer, a policy for it, and a scripted host conversation.

Also used by the integration tests, so that the demo and the tests exercise the same flow.
"""
