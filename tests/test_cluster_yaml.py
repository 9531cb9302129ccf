"""cluster.yaml: valid for Ray's cluster launcher, and safe once `ray up` merges Ray's AWS defaults into it.

The schema is the one shipped in the installed Ray wheel; the merge is Ray's own ``prepare_config`` (what
`ray up` runs before launching anything), so a key left out of cluster.yaml shows up here with Ray's
default value (dashboard on 0.0.0.0, unpinned installs).
"""

import copy
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


def _schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(os.path.dirname(ray.autoscaler.__file__)) / "ray-schema.json").read_text())


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def merged(config) -> dict:
    """cluster.yaml as `ray up` sees it: Ray's AWS defaults filled in, setup commands merged per node kind."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(config))


def _commands(cfg: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    out = [c for k in keys for c in cfg.get(k, [])]
    for node_type in cfg["available_node_types"].values():
        out += node_type.get("initialization_commands", []) + node_type.get("worker_setup_commands", [])
    return out


def _worker_types(cfg: dict) -> dict:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


def test_cluster_yaml_validates_against_the_schema_in_the_ray_wheel(config, merged):
    schema = _schema()
    jsonschema.validate(config, schema)
    jsonschema.validate(merged, schema)   # and after Ray's defaults are merged in, as `ray up` validates it


@pytest.mark.parametrize("where", ["top level", "node type"])
def test_validation_fails_on_a_planted_unknown_key(config, where):
    planted = copy.deepcopy(config)
    if where == "top level":
        planted["max_worker"] = 3                                  # typo of max_workers
    else:
        planted["available_node_types"]["gpu_worker"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        jsonschema.validate(planted, _schema())


def test_head_runs_no_trials_and_every_worker_type_scales_from_zero(config):
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = _worker_types(config)
    assert workers, "no worker types"
    for name, node_type in workers.items():
        assert node_type["min_workers"] == 0, name
        assert 0 < node_type["max_workers"] <= config["max_workers"], name
    assert sum(t["max_workers"] for t in workers.values()) <= config["max_workers"]
    assert 0 < config["idle_timeout_minutes"] <= 15
    gpu = [n for n, t in workers.items() if t["resources"].get("GPU", 0) >= 1]
    cpu = [n for n, t in workers.items() if not t["resources"].get("GPU") and t["resources"].get("CPU", 0) >= 4]
    assert gpu and cpu, f"want a GPU worker type and a CPU worker type, got {sorted(workers)}"


def test_dashboard_is_on_loopback_and_token_auth_is_on_after_the_merge(config, merged):
    head_start = " ".join(merged["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in json.dumps(merged)                  # no world-open dashboard, SSH rule or bind
    starts = [c for c in merged["head_start_ray_commands"] + merged["worker_start_ray_commands"]
              if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    # the token every node needs reaches it through file_mounts (the head copies it to the workers)
    assert merged["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


def test_every_install_is_pinned_and_the_project_installs_from_constraints(merged):
    installs = [c for c in _commands(merged) if "pip install" in c]
    assert any(re.search(r"pip install .*-c constraints\.txt -e \.", c) for c in merged["setup_commands"]), \
        "setup_commands must install the project with pip install -c constraints.txt -e ."
    for command in installs:
        assert re.search(r"-c \S*constraints\.txt", command), f"install without constraints.txt: {command}"
        tail = command.split("pip install", 1)[1].split()
        named = [a.strip("'\"") for i, a in enumerate(tail)
                 if not a.startswith("-") and a not in (".", "-e") and tail[i - 1] not in ("-c", "-r")]
        loose = [a for a in named if "==" not in a]
        assert not loose, f"unpinned package(s) {loose} in: {command}"


def test_network_image_and_credentials(config):
    text = CLUSTER_YAML.read_text()
    assert "0.0.0.0/0" not in text
    assert not re.search(r"aws_access_key|aws_secret|secret_access_key|AKIA[0-9A-Z]{16}", text, re.I)
    images = set()
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        # our own security group on every node type: Ray then never creates its default one, whose SSH
        # rule is open to 0.0.0.0/0 (ray/autoscaler/_private/aws/config.py)
        assert node.get("SecurityGroupIds"), f"{name}: no SecurityGroupIds"
        assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@-]+",
                            node["IamInstanceProfile"]["Arn"]), name
        assert node["MetadataOptions"]["HttpTokens"] == "required", name
        images.add(node["ImageId"])
    assert len(images) == 1 and re.fullmatch(r"ami-[0-9a-f]{17}", images.pop()), "one pinned AMI id"


def test_the_ami_comment_names_the_cuda_of_the_pinned_torch(config):
    """The image comment must follow constraints.txt: bumping torch to another CUDA fails here."""
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    cuda = ".".join(pins["cuda-toolkit"].split(".")[:2])
    text = CLUSTER_YAML.read_text()
    assert f"torch=={pins['torch']}" in text
    assert f"CUDA {cuda}" in text and f'torch.version.cuda == "{cuda}"' in text


def test_file_mounts_carry_what_the_install_needs_and_nothing_else(config):
    """`ray up` hashes every file under each mounted local path and rsyncs it to every node: the mounts
    must be the project's code and install files (not ".", which holds .venv/ and runs/) plus the token."""
    mounts = dict(config["file_mounts"])
    assert mounts.pop("~/.ray/auth_token") == "~/.ray/auth_token"
    local = set(mounts.values())
    readme = re.search(r'^readme = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert {"pyproject.toml", "constraints.txt", readme, "raygenre", "sweeps"} == local
    for remote, path in mounts.items():
        assert (ROOT / path).exists() and remote == f"~/raygenre/{path}", remote
    assert "__pycache__/" in config["rsync_exclude"]
