"""Kept models from an untrusted run directory: crafted files are refused before any of their code runs.

Each attack is first shown to work against a plain ``skops.io.load`` that trusts what the file names
(so the test could fail), then shown to be one ArtifactError sentence through ``load_kept_model``.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io

from raygenre.errors import ArtifactError, one_line
from raygenre.models.artifacts import (
    SKOPS_ROOT,
    SKOPS_TYPES,
    artifact_folder,
    audit_skops,
    load_kept_model,
    save_tabular,
)
from raygenre.models.tabular import build_classifier


class _Planted:
    """A pickled object whose loading writes a marker file: proof that code from the file ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _keep(tmp_path: Path, name: str, params: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 6)), np.arange(120) % 10
    pipeline = build_classifier(name, params=params).fit(X, y)
    meta = {"model": name, "variant": "default", "feature_columns": [f"f{i}" for i in range(6)]}
    return save_tabular(tmp_path / "run" / "artifacts" / name, pipeline, meta)


def _node_of(value) -> dict:
    """skops' own schema node for a plain value (a tuple of strings, say), to splice into a file."""
    with zipfile.ZipFile(io.BytesIO(skops.io.dumps(value))) as archive:
        return json.loads(archive.read("schema.json"))


def _splice(file: Path, node: dict, extra: dict[str, bytes] | None = None) -> None:
    """Rewrite a skops file with ``node`` added as an attribute of the estimator."""
    with zipfile.ZipFile(file) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    schema = json.loads(members["schema.json"])
    attributes = schema["content"]
    attributes["content"]["planted"] = node
    attributes["key_types"]["content"].append(dict(attributes["key_types"]["content"][0]))  # one per key
    members["schema.json"] = json.dumps(schema).encode()
    members.update(extra or {})
    with zipfile.ZipFile(file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _exec_node(marker: Path) -> dict:
    return {"__class__": "exec", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
            "content": _node_of((f"open({str(marker)!r}, 'w').write('ran')",)), "__id__": 1}


def _one_sentence_refusal(folder: Path, marker: Path) -> str:
    with pytest.raises(ArtifactError) as caught:
        load_kept_model(folder)
    message = one_line(caught.value)
    assert not marker.exists(), "code from the file ran"
    assert "\n" not in message and message.endswith(".")
    return message


def test_an_exec_schema_runs_code_under_a_prefix_filter_but_not_here(tmp_path):
    folder = _keep(tmp_path, "knn")
    marker = tmp_path / "ran-exec"
    _splice(folder / "model.skops", _exec_node(marker))
    untrusted = skops.io.get_untrusted_types(file=folder / "model.skops")
    assert "builtins.exec" in untrusted  # a filter trusting "builtins." would let it through ...
    skops.io.load(folder / "model.skops", trusted=untrusted)
    assert marker.read_text() == "ran"  # ... and the crafted file does run code when trusted
    marker.unlink()
    message = _one_sentence_refusal(folder, marker)
    assert "builtins.exec (ConstructorFromReduceNode)" in message and "never writes for a knn model" in message


def test_numpy_load_with_allow_pickle_is_refused_before_it_runs(tmp_path):
    folder = _keep(tmp_path, "random_forest")
    marker = tmp_path / "ran-npy"
    planted = tmp_path / "planted.npy"
    np.save(planted, np.array([_Planted(str(marker))], dtype=object), allow_pickle=True)
    node = {"__class__": "load", "__module__": "numpy", "__loader__": "ConstructorFromReduceNode",
            "content": _node_of((str(planted), None, True)), "__id__": 2}
    _splice(folder / "model.skops", node)
    untrusted = skops.io.get_untrusted_types(file=folder / "model.skops")
    assert "numpy.load" in untrusted  # a filter trusting "numpy." would let it through, and it runs:
    skops.io.load(folder / "model.skops", trusted=untrusted)
    assert marker.read_text() == "ran"
    marker.unlink()
    message = _one_sentence_refusal(folder, marker)
    assert "numpy.load" in message


def test_a_pickled_npy_inside_the_zip_is_not_unpickled(tmp_path):
    folder = _keep(tmp_path, "knn")
    marker = tmp_path / "ran-member"
    with zipfile.ZipFile(folder / "model.skops") as archive:
        schema = json.loads(archive.read("schema.json"))
    fit_x = schema["content"]["content"]["_fit_X"]
    assert fit_x["__loader__"] == "NdArrayNode"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Planted(str(marker))], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(folder / "model.skops", "a") as archive:
        archive.writestr(fit_x["file"] + ".tmp", b"")  # keep the archive valid; the member is replaced below
    with zipfile.ZipFile(folder / "model.skops") as archive:
        members = {n: archive.read(n) for n in archive.namelist() if not n.endswith(".tmp")}
    members[fit_x["file"]] = buffer.getvalue()
    with zipfile.ZipFile(folder / "model.skops", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    message = _one_sentence_refusal(folder, marker)
    assert "cannot be read as a skops model" in message


def test_a_model_json_naming_another_file_or_kind_is_refused(tmp_path):
    folder = _keep(tmp_path, "knn")
    meta = json.loads((folder / "model.json").read_text())
    outside = tmp_path / "elsewhere.skops"
    outside.write_bytes((folder / "model.skops").read_bytes())
    for change, words in [({"file": str(outside)}, "is always 'model.skops'"),
                          ({"file": "../elsewhere.skops"}, "is always 'model.skops'"),
                          ({"kind": "pickle", "file": "model.pkl"}, "unknown kind 'pickle'"),
                          ({"model": "xgboost"}, "never keeps a 'xgboost' model as a skops file")]:
        (folder / "model.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(ArtifactError, match=words):
            load_kept_model(folder)


def test_a_model_file_that_is_a_link_is_refused(tmp_path):
    folder = _keep(tmp_path, "knn")
    real = tmp_path / "real.skops"
    (folder / "model.skops").rename(real)
    (folder / "model.skops").symlink_to(real)
    with pytest.raises(ArtifactError, match="is a link"):
        load_kept_model(folder)


@pytest.mark.parametrize("relative", ["../elsewhere", "artifacts/../../elsewhere", "/etc", "artifacts/..",
                                      "artifacts/a/b", "models/x", "artifacts/", None, ["artifacts", "x"]])
def test_records_naming_a_place_outside_the_run_are_refused(tmp_path, relative):
    with pytest.raises(ArtifactError, match="is not of the form 'artifacts/<name>'"):
        artifact_folder(tmp_path, relative)


def test_an_artifact_folder_linking_out_of_the_run_is_refused(tmp_path):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (run / "artifacts" / "x").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ArtifactError, match="resolves outside"):
        artifact_folder(run, "artifacts/x")
    assert artifact_folder(run, "artifacts/exp3-features__knn__default") == run / "artifacts" / \
        "exp3-features__knn__default"


@pytest.mark.parametrize("name,params", [("knn", {}), ("knn", {"algorithm": "kd_tree"}),
                                         ("knn", {"algorithm": "ball_tree", "metric": "manhattan"}),
                                         ("random_forest", {"n_estimators": 5})])
def test_every_type_raygenre_writes_is_on_its_list_and_loads(tmp_path, name, params):
    folder = _keep(tmp_path, name, params)
    assert SKOPS_ROOT[name] in audit_skops(folder / "model.skops", name)
    kept = load_kept_model(folder)
    probabilities = kept.predict_proba(np.zeros((3, 6)))
    assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert set(SKOPS_TYPES) == set(SKOPS_ROOT)


def test_the_package_never_reads_numpy_files_with_pickles():
    root = Path(__file__).parents[1] / "raygenre"
    offenders = [p for p in root.rglob("*.py") if "allow_pickle=True" in p.read_text()]
    assert offenders == []
    assert pickle  # the test module itself builds pickles only as attack payloads
