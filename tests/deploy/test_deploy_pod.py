"""What a pod runs (``ncbsim deploy run``): the server argv and host spec it execs, and its
refusals. The servers themselves run in containers in tests/deploy_smoke; here nothing
binds a socket on all interfaces of the test machine."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ncbsim.simulations.deploy import pod
from ncbsim.simulations.deploy.render import Rendered

Render = Callable[[str], Rendered]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_gateway_pod_serves_every_port_of_the_deployment(
    rendered: Render, tmp_path: Path
) -> None:
    dep = rendered("quickstart").deployment
    argv = pod.gateway_argv(dep, tmp_path / "pki", tmp_path / "data", tmp_path / "run")
    assert argv[0] == "gateway"
    assert _option(argv, "--listen") == f"0.0.0.0:{dep.gateway.port}"
    assert _option(argv, "--health-listen") == f"0.0.0.0:{dep.gateway.health_port}"
    assert _option(argv, "--metrics-listen") == f"0.0.0.0:{dep.gateway.metrics_port}"
    assert "--metrics-any-address" in argv
    assert _option(argv, "--audit") == str(tmp_path / "data" / "gateway" / "audit.sqlite")
    assert (tmp_path / "data" / "gateway").stat().st_mode & 0o777 == 0o700


def test_a_bureaus_pod_makes_its_records_once_and_hosts_each_bureau_on_its_port(
    rendered: Render, tmp_path: Path
) -> None:
    dep = rendered("quickstart").deployment
    group = dep.groups[-1]
    data, run = tmp_path / "data", tmp_path / "run"
    argv = pod.bureaus_argv(dep, group.name, tmp_path / "pki", data, run)
    assert argv[0] == "host"
    spec = json.loads(Path(_option(argv, "--spec")).read_text())
    assert spec["gateway"] == f"{dep.gateway.service}:{dep.gateway.port}"
    assert [b["bureau"] for b in spec["bureaus"]] == list(group.bureaus)
    for bureau in spec["bureaus"]:
        assert bureau["listen"] == f"0.0.0.0:{dep.port_of(bureau['bureau'])}"
        assert bureau["advertise"] == "auto"
        assert bureau["metrics_listen"] == "off"
        assert Path(bureau["db"]).is_file()
    assert _option(argv, "--pod-metrics-listen") == f"0.0.0.0:{dep.pod.metrics_port}"
    assert _option(argv, "--health-listen") == f"0.0.0.0:{dep.pod.health_port}"
    made = {code: (data / code / "records.sqlite").stat().st_mtime_ns for code in group.bureaus}
    pod.bureaus_argv(dep, group.name, tmp_path / "pki", data, run)  # the pod restarted
    assert {c: (data / c / "records.sqlite").stat().st_mtime_ns for c in group.bureaus} == made


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncbsim", "deploy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_run_refuses_an_unknown_group_before_writing_anything(
    rendered: Render, tmp_path: Path
) -> None:
    out = rendered("quickstart").out
    proc = _run(
        "run", "bureaus", "--group", "bureaus-99",
        "--config", str(out / "deployment.json"),
        "--bundle", str(out / "compose" / "public.json"),
        "--pki", str(tmp_path / "pki"), "--data", str(tmp_path / "data"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ncbsim: no group 'bureaus-99' in the deployment (groups: bureaus-0, bureaus-1)"
    ]
    assert not (tmp_path / "pki").exists()
    assert not (tmp_path / "data").exists()


def test_deploy_run_names_a_missing_bundle(rendered: Render, tmp_path: Path) -> None:
    out = rendered("quickstart").out
    proc = _run(
        "run", "gateway", "--config", str(out / "deployment.json"),
        "--bundle", str(tmp_path / "nowhere.json"),
        "--pki", str(tmp_path / "pki"), "--data", str(tmp_path / "data"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "no such bundle" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_probe_says_unreachable_and_exits_1_for_a_closed_port() -> None:
    proc = _run("probe", "127.0.0.1:9", "--wait", "0")
    assert proc.returncode == 1
    assert proc.stdout.strip() == "127.0.0.1:9: UNREACHABLE"
