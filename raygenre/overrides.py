"""``--set key.path=value`` on the command line -> a nested mapping merged over the YAML configs."""

from __future__ import annotations

import yaml

from raygenre.errors import ConfigError


def parse_overrides(items: list[str]) -> dict:
    """``["exp4.bootstraps=10", "split.seeds=[0,1]"]`` -> a nested mapping (values read as YAML)."""
    out: dict = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ConfigError(f"--set {item!r} is not of the form key.path=value.")
        path, value = item.split("=", 1)
        node = out
        keys = path.strip().split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r} conflicts with an earlier --set of {key}.")
        try:
            node[keys[-1]] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML.") from None
    return out
