"""``ncbsim deploy render|apply|status|down|unpack``: the network as containers
(docs/deploy.md). The work is in :mod:`ncbsim.simulations.deploy`.

:func:`add_parsers` returns the ``deploy`` sub-parsers action, so ``ncbsim deploy run``
(the pods' own start, ncbsim/cli/deploy_run.py) registers beside these.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ncbsim.errors import ConfigError

if TYPE_CHECKING:
    from ncbsim.simulations.deploy.kubectl import Kubectl
    from ncbsim.simulations.deploy.model import Deployment

__all__ = ["add_parsers"]


def cmd_render(args: argparse.Namespace) -> int:
    from ncbsim.simulations.deploy import render

    options = render.Options(
        scenario=args.scenario,
        out=args.out,
        namespace=args.namespace,
        image=args.image or render.default_image(),
        bureaus_per_pod=args.bureaus_per_pod,
        load_users=args.load_users,
        load_workers=args.load_workers,
        load_targets=args.load_targets,
        load_duration=args.load_duration,
        load_user_rate=args.load_user_rate,
        suite=args.suite,
        gateway_service_type=args.gateway_service_type,
    )
    done = render.render(options)
    dep = done.deployment
    print(
        f"rendered {dep.scenario}: {len(dep.bureaus)} bureaus in {len(dep.groups)} pods of up "
        f"to {dep.bureaus_per_pod}, namespace {dep.namespace}, image {dep.image}"
    )
    print("objects: " + ", ".join(f"{count} {kind}" for kind, count in done.kinds.items()))
    print(f"manifests: {args.out / 'k8s'} (Secrets inside: keep it private)")
    print(f"compose:   {args.out / 'compose.yaml'}")
    print(f"PKI:       {args.out / 'pki'} (the root key stays here)")
    print(f"next:      ncbsim deploy apply {args.out}")
    return 0


def _deployment(out: Path) -> Deployment:
    from ncbsim.simulations.deploy.model import Deployment

    path = out / "deployment.json"
    if not path.is_file():
        raise ConfigError(f"{out}: no deployment.json (render one with ncbsim deploy render)")
    return Deployment.load(path)


def _kubectl(args: argparse.Namespace) -> Kubectl:
    from ncbsim.simulations.deploy import kubectl

    binary = "kubectl" if args.dry_run else kubectl.find_kubectl()
    return kubectl.Kubectl(binary=binary, kubeconfig=args.kubeconfig, context=args.context)


def cmd_apply(args: argparse.Namespace) -> int:
    from ncbsim.simulations.deploy import kubectl

    dep = _deployment(args.dir)
    tool = _kubectl(args)
    steps = kubectl.apply_commands(tool, args.dir, dep, load=args.load)
    kubectl.execute(steps, dry_run=args.dry_run, kubectl=tool, say=print)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import shlex

    from ncbsim.simulations.deploy import kubectl

    dep = _deployment(args.dir)
    tool = _kubectl(args)
    if args.dry_run:
        print(shlex.join(kubectl.status_command(tool, dep)))
        return 0
    print(kubectl.status(tool, dep))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ncbsim.simulations.deploy import kubectl

    dep = _deployment(args.dir)
    tool = _kubectl(args)
    steps = kubectl.down_commands(tool, dep, keep_data=args.keep_data)
    kubectl.execute(steps, dry_run=args.dry_run, kubectl=tool, say=print)
    return 0


def cmd_unpack(args: argparse.Namespace) -> int:
    from ncbsim.simulations.deploy import bundle

    count = bundle.unpack(args.bundle, args.to)
    print(f"{count} files unpacked into {args.to}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    return value  # the range is checked by render.Options, in one line


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="the folder ncbsim deploy render wrote")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: kubectl's)")
    parser.add_argument("--context", help="kubeconfig context (default: its current one)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the kubectl commands, run nothing"
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``deploy`` and its commands; returns its sub-parsers action."""
    from ncbsim.simulations.deploy.render import SERVICE_TYPES

    deploy = sub.add_parser(
        "deploy", help="run the network on Kubernetes or Compose (render, apply, status, down)"
    )
    commands = deploy.add_subparsers(dest="deploy_command", required=True, metavar="COMMAND")

    render = commands.add_parser(
        "render", help="write Kubernetes manifests, a Compose file and the PKI for a scenario"
    )
    render.add_argument("scenario", help="built-in scenario name or path of a .toml file")
    render.add_argument("--out", type=Path, required=True, help="folder to write into")
    render.add_argument("--namespace", default="ncbsim", help="Kubernetes namespace (ncbsim)")
    render.add_argument("--image", help="image reference (default localhost/ncbsim:VERSION)")
    render.add_argument(
        "--bureaus-per-pod", type=_positive, default=3, metavar="K", help="bureaus a pod (3)"
    )
    render.add_argument(
        "--load-users", type=_positive, default=10, metavar="N", help="load requesters (10)"
    )
    render.add_argument(
        "--load-workers", type=_positive, default=2, metavar="W", help="locust workers (2)"
    )
    render.add_argument(
        "--load-targets", type=_positive, default=8, metavar="T", help="bureaus the load asks (8)"
    )
    render.add_argument(
        "--load-duration", default="60s", metavar="D", help="how long a load run lasts (60s)"
    )
    render.add_argument(
        "--load-user-rate",
        type=float,
        default=10.0,
        metavar="R",
        help="checks a second each load user sends (10)",
    )
    render.add_argument("--suite", help="session suite of a new PKI (classic or hybrid)")
    render.add_argument(
        "--gateway-service-type",
        default="ClusterIP",
        help="the gateway Service's type: " + ", ".join(SERVICE_TYPES),
    )
    render.set_defaults(func=cmd_render, server=False)

    apply = commands.add_parser("apply", help="kubectl apply a rendered deployment, in order")
    _cluster_options(apply)
    apply.add_argument("--load", action="store_true", help="also (re)start the load pods")
    apply.set_defaults(func=cmd_apply, server=False)

    status = commands.add_parser("status", help="the deployment's pods, one table")
    _cluster_options(status)
    status.set_defaults(func=cmd_status, server=False)

    down = commands.add_parser("down", help="delete the deployment's namespace")
    _cluster_options(down)
    down.add_argument(
        "--keep-data", action="store_true", help="keep the volumes (records, audit trails)"
    )
    down.set_defaults(func=cmd_down, server=False)

    unpack = commands.add_parser("unpack", help="write bundles (Secrets, ConfigMaps) as a PKI")
    unpack.add_argument(
        "--bundle", type=Path, action="append", required=True, help="a bundle file (repeat)"
    )
    unpack.add_argument("--to", type=Path, required=True, help="the PKI folder to write")
    unpack.set_defaults(func=cmd_unpack, server=False)
    return commands
