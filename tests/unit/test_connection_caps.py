"""`serve --max-connections`: one cap for every listener, or one per transport."""

from __future__ import annotations

import argparse

import pytest

from guestagent.cli import serve
from guestagent.errors import AgentError
from guestagent.server.agent import AgentConfig
from guestagent.server.limits import listener_caps, parse_caps


def test_a_plain_number_sets_the_default_and_transports_their_own() -> None:
    assert parse_caps([], 1024) == (1024, {})
    assert parse_caps(["64"], 1024) == (64, {})
    assert parse_caps(["serial=1", "kata=16", "100"], 1024) == (100, {"serial": 1, "kata": 16})


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("tcp=5", "the transport must be one of unix, vsock, serial, kata"),
        ("unix=many", "expected N or TRANSPORT=N"),
        ("0", "at least 1"),
        ("vsock=-3", "at least 1"),
    ],
)
def test_bad_caps_are_refused_with_the_accepted_forms(value: str, says: str) -> None:
    with pytest.raises(AgentError) as refused:
        parse_caps([value], 1024)
    assert says in refused.value.message


def test_each_listener_gets_its_transports_cap() -> None:
    config = AgentConfig(
        listen=["unix:///run/a.sock", "vsock://any:1024", "serial://agent.0"],
        kata=["vsock://any:1025"],
        max_connections=100,
        connection_caps={"vsock": 20, "kata": 5},
    )
    assert listener_caps(config) == {
        "unix:///run/a.sock": 100,
        "vsock://any:1024": 20,
        "serial://agent.0": 100,
        "vsock://any:1025": 5,
    }


def test_serve_parses_the_caps_into_the_config() -> None:
    parser = argparse.ArgumentParser()
    serve.add_agent_arguments(parser)
    args = parser.parse_args(["--max-connections", "kata=8", "--max-connections", "300"])
    config = serve.config_from_args(args)
    assert (config.max_connections, config.connection_caps) == (300, {"kata": 8})
