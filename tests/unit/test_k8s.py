"""deploy/k8s/train-stage1.yaml, checked offline: every document valid against the Kubernetes
schemas (kubernetes-validate, strict: unknown fields fail), and the parts that must agree do: the
headless Service and the Indexed Job's pods, the stage's launch params (node count, rendezvous endpoint), the
stage it runs and the DVC outputs it pulls, credentials only from a Secret. No cluster runs here."""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ul.params import preset_config

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "train-stage1.yaml"
K8S = "1.33.0"


@pytest.fixture(scope="module")
def docs() -> dict:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_every_document_is_valid_kubernetes(docs):
    assert set(docs) == {"Service", "Job"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_the_validation_would_catch_a_broken_manifest(docs):
    broken = copy.deepcopy(docs["Job"])
    broken["spec"]["completions"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S, strict=True)
    typo = copy.deepcopy(docs["Job"])
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # `resources` misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S, strict=True)


def test_the_parts_agree(docs):
    service, job = docs["Service"], docs["Job"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    script = container["args"][0]
    overrides = shlex.split(script[script.index("ul params") :].split("&&")[0])[2:]
    opt = dict(o.split("=", 1) for o in overrides)
    cfg = preset_config(ROOT / "conf", opt.pop("preset"), [f"{k}={v}" for k, v in opt.items()])  # they compose
    launch = cfg.stage1.launch

    assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"] == {
        "job-name": job["metadata"]["name"]
    }
    assert pod["subdomain"] == service["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert launch.nnodes == job["spec"]["completions"] == job["spec"]["parallelism"] and launch.max_restarts > 0
    host, port = launch.rdzv_endpoint.split(":")
    assert host == f"{job['metadata']['name']}-0.{service['metadata']['name']}"  # pod 0 of the Indexed Job
    assert int(port) == service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]

    module = shlex.split(script[script.index("python -m") :].split("&&")[0])[2]
    assert importlib.util.find_spec(module) is not None
    stage = module.rsplit(".", 1)[1]
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    pulled = shlex.split(re.search(r"dvc pull ([^&]+)&&", script)[1])
    assert pulled and set(pulled) <= set(deps)

    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert set(env[key]) == {"name", "valueFrom"} and "secretKeyRef" in env[key]["valueFrom"]  # never a literal
