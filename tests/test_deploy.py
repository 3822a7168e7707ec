"""Deployment recipes, checked without a container runtime or a cluster.

- The image's steps (deploy/image.sh) run here outside a container: the build
  stage installs the project as a wheel into a fresh prefix with the shipped
  model and LM beside it, the entry point serves from that prefix with a model
  "mounted" elsewhere, the HEALTHCHECK command answers, SIGTERM drains.  The
  prefix's venv starts as a hard-linked copy of this .venv, so every pinned
  dependency is already satisfied and pip needs no network (PIP_NO_INDEX).
- The Dockerfile only orders those steps (checked), and everything it copies exists.
- The Kubernetes manifests validate against the API's JSON schemas
  (kubernetes-validate, offline) and agree with each other and with the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parent.parent
IMAGE_SH = REPO / "deploy" / "image.sh"
K8S = REPO / "deploy" / "k8s"
AUDIO = REPO / "samples" / "goforward.wav"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- the image recipe


@pytest.mark.timeout(420)
def test_image_script_builds_a_prefix_that_serves_a_mounted_model_and_drains(tmp_path: Path) -> None:
    assert sys.prefix != sys.base_prefix, "the tests run from the project's venv (scripts/setup.sh)"
    prefix = tmp_path / "opt-xlsr-stream"
    prefix.mkdir()
    # The venv's real folder: cp -al of a symlinked .venv would copy the link, and the build
    # would install its wheel over this venv's editable install.
    subprocess.run(["cp", "-al", os.path.realpath(sys.prefix), str(prefix / "venv")], check=True)
    entry_point = Path(sys.prefix) / "bin" / "xlsr-stream"
    entry_point_before = entry_point.read_bytes()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", XLSR_TORCH_INDEX="")
    had_build_folder = (REPO / "build").exists()
    build = subprocess.run(
        ["bash", str(IMAGE_SH), "build", str(prefix)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=360,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "image.sh: built" in build.stdout
    site = next((prefix / "venv" / "lib").glob("python3*/site-packages"))
    assert (site / "streaming" / "recognizer.py").is_file()  # a wheel's copy, not this checkout
    assert not list(site.glob("__editable__*xlsr*"))
    shipped = prefix / "models" / "en-small"
    assert (shipped / "model.safetensors").is_file() and (shipped / "language_model" / "attrs.json").is_file()
    assert had_build_folder or not (REPO / "build").exists()  # setuptools' scratch folder cleaned up
    assert entry_point.read_bytes() == entry_point_before  # this .venv's own xlsr-stream untouched

    # "Mount" a model folder elsewhere, under another name, and serve it from a neutral cwd.
    mounted = tmp_path / "models" / "mounted-model"
    shutil.copytree(shipped, mounted, copy_function=os.link)
    port = free_port()
    serve_env = dict(env, XLSR_PREFIX=str(prefix), XLSR_STREAM_MODEL=str(mounted), XLSR_HOST="127.0.0.1",
                     XLSR_PORT=str(port), OMP_NUM_THREADS="1")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(IMAGE_SH), "serve", "--no-lm", "--greedy", "--threads", "1", "--max-connections", "2"],
            cwd=tmp_path, env=serve_env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "listening on ws://" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        health = subprocess.run(["bash", str(IMAGE_SH), "healthcheck"], env=serve_env, timeout=30)
        assert health.returncode == 0
        hello, final = asyncio.run(asyncio.wait_for(_one_stream(port), 60))
        assert hello["model"]["name"] == "mounted-model"
        assert final["type"] == "final" and final["text"]
        assert str(mounted) in log.read_text()
        proc.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL
        assert proc.wait(timeout=40) == 0
        assert "server stopped" in log.read_text()
        unhealthy = subprocess.run(["bash", str(IMAGE_SH), "healthcheck"], env=serve_env, timeout=30,
                                   capture_output=True, text=True)
        assert unhealthy.returncode == 1 and "healthz" in unhealthy.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


async def _one_stream(port: int) -> tuple[dict, dict]:
    audio, rate = sf.read(AUDIO, dtype="int16")
    async with connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        for start in range(0, len(audio), 4000):
            await ws.send(np.asarray(audio[start : start + 4000], dtype="<i2").tobytes())
        await ws.send('{"type": "finish"}')
        messages = [json.loads(x) async for x in ws]
    finals = [m for m in messages if m["type"] == "final"]
    # the last one with text: an endpoint may close the speech before finish (then "" ends it)
    return hello, ([f for f in finals if f["text"]] or finals)[-1]


def test_image_script_refuses_a_missing_model_and_an_unknown_step(tmp_path: Path) -> None:
    env = dict(os.environ, XLSR_PREFIX=str(tmp_path), XLSR_STREAM_MODEL=str(tmp_path / "nope"))
    missing = subprocess.run(["bash", str(IMAGE_SH), "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and f"no model folder at XLSR_STREAM_MODEL={tmp_path / 'nope'}" in missing.stderr
    unknown = subprocess.run(["bash", str(IMAGE_SH), "deploy"], capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "image.sh build PREFIX" in unknown.stderr


def test_dockerfile_runs_the_tested_steps_as_a_non_root_user() -> None:
    import dockerfile  # the official BuildKit parser: a syntax error fails here

    steps = dockerfile.parse_file(str(REPO / "Dockerfile"))
    first = {c.cmd: c for c in reversed(steps)}  # each instruction's first occurrence
    assert [c.value for c in steps if c.cmd == "FROM"] == [("${BASE}", "AS", "build"), ("${BASE}",)]
    assert first["ARG"].value == ("BASE=python:3.11-slim-bookworm",)  # one slim base for both stages
    assert ("TORCH_INDEX=https://download.pytorch.org/whl/cpu",) in [c.value for c in steps if c.cmd == "ARG"]
    runs = [c.value[0] for c in steps if c.cmd == "RUN"]
    assert any("deploy/image.sh build /opt/xlsr-stream" in r and "${TORCH_INDEX}" in r for r in runs)
    assert first["ENTRYPOINT"].value == ("/opt/xlsr-stream/image.sh", "serve")
    assert first["HEALTHCHECK"].value == ("CMD", "/opt/xlsr-stream/image.sh", "healthcheck")
    assert first["STOPSIGNAL"].value == ("SIGTERM",)
    uid = first["USER"].value[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    env = dict(zip(first["ENV"].value[::2], first["ENV"].value[1::2], strict=True))
    assert env["XLSR_STREAM_MODEL"] == "/opt/xlsr-stream/models/en-small" and env["XLSR_PORT"] == "2700"
    for copy in (c for c in steps if c.cmd == "COPY" and not c.flags):
        source = copy.value[0]
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


# ---------------------------------------------------------------- Kubernetes


def _manifests() -> dict[str, dict[str, Any]]:
    """Every resource the kustomization lists, by kind."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    docs = [doc for name in listed for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return {doc["kind"]: doc for doc in docs}


# The oldest Kubernetes still in common support and the newest the validator knows.
K8S_VERSIONS = ["1.29.0", "1.37.0"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate

    manifests = _manifests()
    assert set(manifests) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap"}
    for doc in manifests.values():
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the path of what is wrong
    # The validator is strict: a misspelt field (a probe that would silently never run) fails.
    broken = json.loads(json.dumps(manifests["Deployment"]))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, version, strict=True)


def test_manifests_agree_with_each_other_and_with_the_server() -> None:
    from server.cli import build_parser, config_from_args
    from server.metrics import ServerMetrics

    m = _manifests()
    deployment, service, pdb, hpa, rules = (
        m["Deployment"], m["Service"], m["PodDisruptionBudget"], m["HorizontalPodAutoscaler"], m["ConfigMap"]
    )
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    image_name = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"][0]["name"]
    assert container["image"] == image_name

    # The container's args are ones `xlsr-stream serve` accepts, with the values the manifests assume.
    config = config_from_args(build_parser().parse_args(container["args"]))
    env = {e["name"]: e["value"] for e in container["env"]}
    (port,) = container["ports"]
    assert int(env["XLSR_PORT"]) == port["containerPort"] == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    # The kubelet's SIGKILL comes after the grace period: it must outlast preStop + the drain.
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > pre_stop + config.drain_timeout_s
    # A pod runs as the image's non-root user.
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # Autoscaling reads the gauge the server exports, with headroom below --max-connections.
    (gauge,) = [family.name for family in ServerMetrics().active_streams.describe()]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "xlsr-stream"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == gauge
    assert 0 < float(metric["pods"]["target"]["averageValue"]) < config.max_connections
    rule = yaml.safe_load(rules["data"]["config.yaml"])["rules"][0]
    assert rule["seriesQuery"].startswith(gauge + "{") and rule["name"]["as"] == gauge
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1  # one pod may go at a time
