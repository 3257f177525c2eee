"""Standard gRPC tooling works against every server: health per service (and NOT_SERVING
while a process drains), and server reflection in both v1 and v1alpha, over real mTLS.

The clients are the standard ones, not ncbsim's: grpcio-health-checking's stubs,
grpcio-reflection's ProtoReflectionDescriptorDatabase (v1alpha) and a stub generated from
grpc's reflection v1 proto. Service names come from the generated descriptors.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from ncbsim import observe
from ncbsim.pki import GATEWAY_NAME, PkiDir, bureau_dns_name
from ncbsim.simulations.network import Network
from ncbsim.v2 import bureau_pb2, gateway_pb2
from ncbsim.vendor.grpc_reflection_v1 import reflection_pb2, reflection_pb2_grpc

pytestmark = pytest.mark.integration

GATEWAY_SERVICES = [s.full_name for s in gateway_pb2.DESCRIPTOR.services_by_name.values()]
BUREAU_SERVICES = [s.full_name for s in bureau_pb2.DESCRIPTOR.services_by_name.values()]
REFLECTION_V1 = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT_S = 30  # generous: only a hung server would need it


def _channel(network: Network, target: str) -> grpc.Channel:
    """A plain synchronous grpc channel with the operator's certificate, as a tool opens
    one; ``target`` is "gateway" or a bureau code."""
    tls = PkiDir(network.workdir).tls("operator")
    credentials = grpc.ssl_channel_credentials(tls.root, tls.key, tls.cert)
    if target == "gateway":
        address, name = network.gateway.address, GATEWAY_NAME
    else:
        address, name = network.node(target).address, bureau_dns_name(target)
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", name)]
    )


@pytest.fixture
def gateway(network: Network) -> Iterator[grpc.Channel]:
    """A channel to the gateway, closed after the test."""
    with _channel(network, "gateway") as channel:
        yield channel


@pytest.fixture
def node(network: Network) -> Iterator[grpc.Channel]:
    """A channel to NL's node (in its host process), closed after the test."""
    with _channel(network, "NL") as channel:
        yield channel


def _check(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
    return int(reply.status)


@pytest.mark.parametrize(
    ("target", "services"), [("gateway", GATEWAY_SERVICES), ("NL", BUREAU_SERVICES)]
)
def test_health_answers_for_each_service(
    network: Network, target: str, services: list[str]
) -> None:
    """A probe naming the server's service (or none) is SERVING; an unknown name NOT_FOUND."""
    assert services
    with _channel(network, target) as channel:
        assert {name: _check(channel, name) for name in ["", *services]} == dict.fromkeys(
            ["", *services], SERVING
        )
        with pytest.raises(grpc.RpcError) as refused:
            _check(channel, "no.such.Service")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def _v1_ask(
    channel: grpc.Channel, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return list(stub.ServerReflectionInfo(iter(requests), timeout=TIMEOUT_S))


@pytest.mark.parametrize(
    ("target", "services"), [("gateway", GATEWAY_SERVICES), ("NL", BUREAU_SERVICES)]
)
def test_reflection_v1_lists_and_describes_the_services(
    network: Network, target: str, services: list[str]
) -> None:
    """A v1 reflection client (what `buf curl --reflect-protocol grpc-v1` speaks) lists
    both reflection versions and health, finds the file of the service and resolves each
    of its methods to the request and response types ncbsim's stubs use."""
    ours = {"gateway": gateway_pb2, "NL": bureau_pb2}[target].DESCRIPTOR
    with _channel(network, target) as channel:
        listed, *files = _v1_ask(
            channel,
            reflection_pb2.ServerReflectionRequest(list_services=""),
            *(reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in services),
        )
    names = {s.name for s in listed.list_services_response.service}
    assert names == {
        *services,
        observe.SERVICE_NAME,  # every server streams its events to the operator
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
        REFLECTION_V1,
    }
    for service, reply in zip(services, files, strict=True):
        protos = [
            descriptor_pb2.FileDescriptorProto.FromString(data)
            for data in reply.file_descriptor_response.file_descriptor_proto
        ]
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        while len(added) < len(protos):  # each file once its dependencies are in
            ready = [p for p in protos if p.name not in added and set(p.dependency) <= added]
            assert ready, "the reply lacks a file another one depends on"
            for proto in ready:
                pool.Add(proto)
                added.add(proto.name)
        found = pool.FindServiceByName(service)
        assert found.file.name == ours.name
        expected = ours.pool.FindServiceByName(service)
        assert {
            m.name: (m.input_type.full_name, m.output_type.full_name) for m in found.methods
        } == {m.name: (m.input_type.full_name, m.output_type.full_name) for m in expected.methods}


def test_reflection_v1alpha_through_grpcio_reflection_client(gateway: grpc.Channel) -> None:
    """grpcio-reflection's own v1alpha client lists the same services, finds the gateway
    service's file and resolves one of its methods."""
    database = ProtoReflectionDescriptorDatabase(gateway)
    assert set(database.get_services()) == {
        *GATEWAY_SERVICES,
        observe.SERVICE_NAME,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
        REFLECTION_V1,
    }
    pool = descriptor_pool.DescriptorPool(database)
    for name in GATEWAY_SERVICES:
        ours = gateway_pb2.DESCRIPTOR.services_by_name[name.rpartition(".")[2]]
        found = pool.FindServiceByName(name)
        assert found.file.name == gateway_pb2.DESCRIPTOR.name
        method = found.methods_by_name[ours.methods[0].name]
        assert method.input_type.full_name == ours.methods[0].input_type.full_name


def test_reflection_v1_unknown_symbol_is_an_error_response(node: grpc.Channel) -> None:
    """A symbol no server file declares gets NOT_FOUND in the v1 error response."""
    (reply,) = _v1_ask(
        node, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such")
    )
    assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_turns_not_serving_when_a_process_drains(fresh_network: Network) -> None:
    """After SIGTERM the gateway and a node host report NOT_SERVING to a Watch on their
    service before they close: a load balancer stops sending them calls."""
    watched = {"gateway": GATEWAY_SERVICES[0], "NL": BUREAU_SERVICES[0]}
    channels = {target: _channel(fresh_network, target) for target in watched}
    try:
        streams = {
            target: health_pb2_grpc.HealthStub(channels[target]).Watch(
                health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S * 2
            )
            for target, service in watched.items()
        }
        assert {t: next(s).status for t, s in streams.items()} == dict.fromkeys(watched, SERVING)
        os.kill(fresh_network.gateway.pid, signal.SIGTERM)
        os.kill(fresh_network.node("NL").pid, signal.SIGTERM)
        assert {t: next(s).status for t, s in streams.items()} == dict.fromkeys(
            watched, NOT_SERVING
        )
    finally:
        for channel in channels.values():
            channel.close()
