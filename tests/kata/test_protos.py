"""The checked-in *_pb2.py modules are exactly what protoc makes of the .proto files beside
them, and the messages keep Kata's field numbers (so the wire stays compatible)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from guestagent.kata.pb import agent_pb2, health_pb2, oci_pb2, ttrpc_pb2, types_pb2
from guestagent.kata.registry import NOT_OFFERED
from guestagent.kata.service import rpc_table

REPO = Path(__file__).resolve().parents[2]
PB = REPO / "guestagent" / "kata" / "pb"


def test_generated_modules_match_the_protos(tmp_path: Path) -> None:
    if shutil.which("protoc") is None:
        pytest.fail("protoc is missing (apt-get install protobuf-compiler; .ci/run installs it)")
    subprocess.run(["bash", str(PB / "generate.sh"), str(tmp_path)], check=True)
    generated = sorted((tmp_path / "guestagent" / "kata" / "pb").glob("*_pb2.py"))
    assert [p.name for p in generated] == sorted(p.name for p in PB.glob("*_pb2.py"))
    for path in generated:
        assert path.read_bytes() == (PB / path.name).read_bytes(), (
            f"{path.name} is stale: run guestagent/kata/pb/generate.sh"
        )


def number(message: type, field: str) -> int:
    return message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]


def test_field_numbers_are_katas() -> None:
    assert number(agent_pb2.CreateContainerRequest, "OCI") == 6
    assert number(agent_pb2.CreateContainerRequest, "storages") == 5
    assert number(agent_pb2.CopyFileRequest, "data") == 8
    assert number(agent_pb2.CreateSandboxRequest, "sandbox_id") == 5
    assert number(agent_pb2.GuestDetailsResponse, "agent_details") == 2
    assert number(oci_pb2.Process, "OOMScoreAdj") == 11
    assert number(oci_pb2.Linux, "Namespaces") == 6
    assert number(types_pb2.ARPNeighbor, "lladdr") == 3
    assert number(health_pb2.VersionCheckResponse, "agent_version") == 2
    assert number(ttrpc_pb2.Request, "timeout_nano") == 4
    assert number(ttrpc_pb2.Response, "payload") == 2
    assert agent_pb2.DESCRIPTOR.package == "grpc"


def test_every_handler_matches_the_service_definition() -> None:
    services = {
        "grpc.AgentService": agent_pb2.DESCRIPTOR.services_by_name["AgentService"],
        "grpc.Health": health_pb2.DESCRIPTOR.services_by_name["Health"],
    }
    table = rpc_table().by_name
    for (service, method), rpc in table.items():
        descriptor = services[service].methods_by_name[method]
        assert rpc.request.DESCRIPTOR.full_name == descriptor.input_type.full_name
        assert rpc.response.DESCRIPTOR.full_name == descriptor.output_type.full_name
    declared = {(name, m.name) for name, s in services.items() for m in s.methods}
    assert declared == set(table), "every RPC the protos declare has a handler, and no more"
    assert not set(NOT_OFFERED) & {method for _, method in table}
