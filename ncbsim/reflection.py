"""Server reflection in both protocol versions: grpc.reflection.v1 and v1alpha.

grpcio-reflection serves only ``grpc.reflection.v1alpha``; ``buf curl --reflect-protocol
grpc-v1`` and newer grpcurl ask ``grpc.reflection.v1``. The two protocols' messages are
the same field for field (tests/ncbsim/test_reflection.py checks it), so the v1 service hands
each request to grpcio-reflection's public v1alpha servicer by re-serialising it, and its
answer back the same way: the bytes on the wire are what v1alpha would send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2

from ncbsim.vendor.grpc_reflection_v1 import reflection_pb2 as v1_pb2
from ncbsim.vendor.grpc_reflection_v1 import reflection_pb2_grpc as v1_pb2_grpc

V1_SERVICE_NAME: str = v1_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME


class _V1Servicer:
    """``grpc.reflection.v1.ServerReflection``, answered by a v1alpha servicer."""

    def __init__(self, v1alpha: Any) -> None:
        self._v1alpha = v1alpha

    async def ServerReflectionInfo(  # noqa: N802 - the generated servicer's method name
        self,
        request_iterator: AsyncIterator[v1_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[v1_pb2.ServerReflectionResponse]:
        async def as_v1alpha() -> AsyncIterator[v1alpha_pb2.ServerReflectionRequest]:
            async for request in request_iterator:
                yield v1alpha_pb2.ServerReflectionRequest.FromString(request.SerializeToString())

        async for response in self._v1alpha.ServerReflectionInfo(as_v1alpha(), context):
            yield v1_pb2.ServerReflectionResponse.FromString(response.SerializeToString())


def enable(server: grpc.aio.Server, service_names: Sequence[str]) -> list[str]:
    """Serve reflection v1 and v1alpha on ``server`` for ``service_names`` plus both
    reflection services themselves; returns the names ListServices answers."""
    names = [*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    v1_pb2_grpc.add_ServerReflectionServicer_to_server(
        _V1Servicer(reflection.aio.ReflectionServicer(names)), server
    )
    return names
