"""Reflection v1 is v1alpha under another package name, so one servicer answers both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from ncbsim import reflection as ncbsim_reflection
from ncbsim.v2 import gateway_pb2
from ncbsim.vendor.grpc_reflection_v1 import reflection_pb2 as v1_pb2

GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]


def _shape(file: object, package: str) -> descriptor_pb2.FileDescriptorProto:
    """A file's messages and services, with its package name taken out of type names."""
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)  # type: ignore[attr-defined]
    shape = descriptor_pb2.FileDescriptorProto()
    shape.message_type.extend(proto.message_type)
    shape.service.extend(proto.service)
    for message in shape.message_type:
        for field in message.field:
            field.type_name = field.type_name.replace(f".{package}.", ".")
    for service in shape.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{package}.", ".")
            method.output_type = method.output_type.replace(f".{package}.", ".")
    return shape


def test_v1_declares_the_v1alpha_messages_field_for_field() -> None:
    """The vendored v1 proto matches grpcio-reflection's v1alpha in every message, field
    number, type and RPC, so re-serialising between them loses nothing."""
    v1 = _shape(v1_pb2.DESCRIPTOR, "grpc.reflection.v1")
    v1alpha = _shape(v1alpha_pb2.DESCRIPTOR, "grpc.reflection.v1alpha")
    assert v1 == v1alpha
    assert v1_pb2.DESCRIPTOR.package == "grpc.reflection.v1"
    assert v1_pb2.DESCRIPTOR.name == "grpc/reflection/v1/reflection.proto"


async def _answers(servicer: object, requests: list[bytes], message: type) -> list[bytes]:
    async def stream() -> AsyncIterator[object]:
        for data in requests:
            yield message.FromString(data)  # type: ignore[attr-defined]

    replies = servicer.ServerReflectionInfo(stream(), None)  # type: ignore[attr-defined]
    return [reply.SerializeToString() async for reply in replies]


def test_v1_answers_are_the_bytes_v1alpha_sends() -> None:
    """Each kind of request, an unknown symbol and an empty request included, gets from
    the v1 service exactly the bytes the v1alpha service sends."""
    names = [GATEWAY.full_name, ncbsim_reflection.V1_SERVICE_NAME, reflection.SERVICE_NAME]
    requests = [
        v1_pb2.ServerReflectionRequest(list_services=""),
        v1_pb2.ServerReflectionRequest(file_containing_symbol=GATEWAY.full_name),
        v1_pb2.ServerReflectionRequest(file_containing_symbol=GATEWAY.methods[0].full_name),
        v1_pb2.ServerReflectionRequest(file_by_filename=gateway_pb2.DESCRIPTOR.name),
        v1_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Symbol"),
        v1_pb2.ServerReflectionRequest(host="h"),
    ]
    wire = [r.SerializeToString() for r in requests]
    v1alpha_servicer = reflection.aio.ReflectionServicer(names)
    v1_servicer = ncbsim_reflection._V1Servicer(reflection.aio.ReflectionServicer(names))
    expected = asyncio.run(_answers(v1alpha_servicer, wire, v1alpha_pb2.ServerReflectionRequest))
    got = asyncio.run(_answers(v1_servicer, wire, v1_pb2.ServerReflectionRequest))
    assert got == expected
    assert len(got) == len(requests)
    first = v1_pb2.ServerReflectionResponse.FromString(got[0])
    assert sorted(s.name for s in first.list_services_response.service) == sorted(names)
    assert v1_pb2.ServerReflectionResponse.FromString(got[4]).HasField("error_response")
