"""``ncbsim deploy run ROLE`` (what a pod runs) and ``ncbsim deploy probe`` (its health).

``run`` is the container command the rendered manifests give every pod (docs/deploy.md):
it unpacks the pod's PKI from its bundles into memory, prepares what the role needs, and
``exec``s the ordinary server, so the server is the pod's process 1:

- ``gateway`` and ``bureaus --group NAME`` (:mod:`ncbsim.simulations.deploy.pod`);
- ``load-master`` and ``load-worker``: the load harness in locust's distributed mode. Each
  builds the same plan from the deployment (:mod:`ncbsim.load.deployed`: the targets'
  records regenerated from the deployment's seed, the requesters issued at render time),
  so no file passes between the pods; the master judges the SLOs and its exit code is
  the verdict (``kubectl logs load-master``).

``probe`` asks a plaintext health port (``--health-listen``) what the kubelet's gRPC probe
asks, for clusters or engines without gRPC probes, and for tests: exit 0 when SERVING.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ncbsim.errors import ConfigError

__all__ = ["add_parsers"]

ROLES = ("gateway", "bureaus", "load-master", "load-worker")
LOAD_DEADLINE_S = 5.0


def _load_argv(role: str, deployment: object, pki: Path, data: Path) -> list[str]:
    from ncbsim.load.deployed import plan_for_deployment
    from ncbsim.simulations.deploy.model import Deployment
    from ncbsim.simulations.deploy.pod import gateway_address

    assert isinstance(deployment, Deployment)
    load = deployment.load_test
    plan = plan_for_deployment(
        deployment,
        pki,
        gateway_address(deployment),
        data / "cache",
        users=load.users,
        seed=load.seed,
        workers=load.workers,
        deadline_s=LOAD_DEADLINE_S,
        processes=1,  # a generator peaks near 100 MiB: one at a time, inside the pod's limit
    )
    path = data / "plan.json"
    plan.save(path)
    out = str(data / "load")
    if role == "load-worker":
        master = f"{load.service}:{load.master_port}"
        return ["load", "--join", master, "--plan", str(path), "--workers", "1", "--out", out]
    return [
        "load",
        "--plan",
        str(path),
        "--workers",
        "0",
        "--remote-workers",
        str(load.workers),
        "--master-bind",
        f"0.0.0.0:{load.master_port}",
        "--users",
        str(load.users),
        "--user-rate",
        str(load.user_rate),
        "--duration",
        load.duration,
        "--out",
        out,
    ]


def cmd_run(args: argparse.Namespace) -> int:
    from ncbsim.simulations.deploy import pod
    from ncbsim.simulations.deploy.model import Deployment

    deployment = Deployment.load(args.config)
    if args.role == "bureaus" and not args.group:
        raise ConfigError("deploy run bureaus needs --group NAME (a group of deployment.json)")
    if args.role != "bureaus" and args.group:
        raise ConfigError("--group goes with deploy run bureaus")
    if args.role == "bureaus":
        deployment.group(args.group)  # an unknown group is refused before anything is written
    pod.unpack_pki(args.bundle, args.pki)
    run = args.pki.parent
    if args.role == "gateway":
        argv = pod.gateway_argv(deployment, args.pki, args.data, run)
    elif args.role == "bureaus":
        argv = pod.bureaus_argv(deployment, args.group, args.pki, args.data, run)
    else:
        argv = _load_argv(args.role, deployment, args.pki, args.data)
    pod.exec_ncbsim(argv)
    return 0  # not reached: exec


def cmd_probe(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ncbsim.config import check_address

    check_address(args.address)
    deadline = time.monotonic() + args.wait
    status = "UNREACHABLE"
    with grpc.insecure_channel(args.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=2)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                code = exc.code()
                status = "UNREACHABLE" if code == grpc.StatusCode.UNAVAILABLE else code.name
            if status == "SERVING" or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
    shown = f" {args.service}" if args.service else ""
    print(f"{args.address}{shown}: {status}")
    return 0 if status == "SERVING" else 1


def add_parsers(deploy_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``run`` and ``probe`` on the ``ncbsim deploy`` subparsers."""
    run = deploy_sub.add_parser(
        "run",
        help="what a pod of a deployed network runs (the manifests' container command)",
        description="Unpack this pod's PKI from its bundles, prepare the role, and exec its "
        "server. docs/deploy.md.",
    )
    run.add_argument("role", choices=ROLES)
    run.add_argument("--group", help="with bureaus: which group of deployment.json")
    run.add_argument("--config", type=Path, required=True, help="the deployment.json mounted")
    run.add_argument(
        "--bundle",
        type=Path,
        action="append",
        required=True,
        help="a PKI bundle mounted (public, then this pod's keys); repeat",
    )
    run.add_argument("--pki", type=Path, required=True, help="where to unpack the PKI (memory)")
    run.add_argument("--data", type=Path, required=True, help="this pod's volume")
    run.set_defaults(func=cmd_run, server=True)

    probe = deploy_sub.add_parser(
        "probe",
        help="ask a plaintext gRPC health port whether it serves (exit 0 when SERVING)",
    )
    probe.add_argument("address", help="HOST:PORT of a --health-listen port")
    probe.add_argument("--service", default="", help="service name (default '': the whole pod)")
    probe.add_argument(
        "--wait", type=float, default=0.0, help="keep asking for up to this many seconds"
    )
    probe.set_defaults(func=cmd_probe, server=False)
