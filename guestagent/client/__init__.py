"""Host-side client for the agent protocol, in two flavours.

    with Client.connect("unix:///run/guestagent.sock") as agent:
        print(agent.status())

    async with await AsyncClient.connect(uri) as agent:
        await agent.ping()

Both open with `hello` by default and raise `RemoteError` subclasses for error replies.
"""

from guestagent.client.async_client import AsyncClient
from guestagent.client.errors import (
    AgentConnectionError,
    RemoteEffectError,
    RemoteError,
    RemotePolicyDenied,
    RemoteProtocolError,
    RemoteStateError,
)
from guestagent.client.sync_client import Client

__all__ = [
    "AgentConnectionError",
    "AsyncClient",
    "Client",
    "RemoteEffectError",
    "RemoteError",
    "RemotePolicyDenied",
    "RemoteProtocolError",
    "RemoteStateError",
]
