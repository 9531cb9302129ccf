"""Experiments 1 and 2 through the sweep CLI: every Table 1 / Appendix A row, and the paper profile's weights check."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from raygenre.config import load_experiment
from raygenre.records import read_records
from raygenre.sweep import main

sys.path.insert(0, str(Path(__file__).parent))
from predict_checks import assert_predictions_match_records  # noqa: E402

#: exp1/exp2 on a tiny synthetic GTZAN: 2 clips of 3 s per genre (10 train, 10 test), 64 px mel images.
TINY = ["--data", "synthetic", "--no-report",
        "--set", "data.synthetic.clips_per_genre=2", "--set", "data.synthetic.seconds=3",
        "--set", "prepare.clip_seconds=3", "--set", "prepare.min_seconds=1", "--set", "prepare.mel.size=64",
        "--set", "split.test_fraction=0.5", "--set", "train.epochs=1", "--set", "train.batch_size=10",
        "--set", "model_train.cnn.epochs=1", "--set", "model_train.crnn.epochs=1"]  # quick trains these longer
EXP1_ROWS = {("cnn", "default"), ("crnn", "default"), ("resnet18", "last_then_all"), ("resnet18", "finetune_all"),
             *((net, v) for net in ("alexnet", "vgg16") for v in ("fc6", "fc7", "fc8", "finetune_all"))}
EXP2_ROWS = {("cnn", "default"), ("crnn", "default"), ("alexnet", "finetune_all"), ("vgg16", "finetune_all"),
             ("resnet18", "last_then_all")}  # Table 1's ResNet row is Appendix A's last_then_all (study.json)


def test_paper_profile_without_weight_files_fails_in_one_sentence_before_any_work(tmp_path, monkeypatch, capsys):
    """No ImageNet files and no network: one sentence naming the file, before prepare, Ray or any trial."""
    import ray

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    was_running = ray.is_initialized()
    assert main(["exp1", "--profile", "paper", "--data", "synthetic", "--storage", str(tmp_path / "runs")]) == 2
    captured = capsys.readouterr()
    files = r"(alexnet-owt-7be5be79|vgg16-397923af|resnet18-f37072fd)\.pth"
    assert captured.err.count("\n") == 1 and re.search(files, captured.err)
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in captured.err and "weights.source" in captured.err
    assert not (tmp_path / "runs").exists() and "run directory" not in captured.out  # nothing prepared
    assert ray.is_initialized() == was_running


@pytest.mark.slow
def test_exp1_and_exp2_write_one_ok_record_per_row(ray_session, tmp_path, capsys):
    argv = ["--storage", str(tmp_path), "--name", "r", *TINY]
    assert main(["exp1", *argv]) == 0
    assert main(["exp2", *argv]) == 0
    records = read_records(tmp_path / "r")
    exp1 = [r for r in records if r["study"] == "exp1-mel"]
    exp2 = [r for r in records if r["study"] == "exp2-mel"]
    assert {(r["model"], r["variant"]) for r in exp1} == EXP1_ROWS and len(exp1) == 12
    assert {(r["model"], r["variant"]) for r in exp2} == EXP2_ROWS and len(exp2) == 5
    for r in records:
        assert r["status"] == "ok" and r["family"] == "spectrogram" and r["representation"] == "mel"
        assert r["params"]["total"] >= r["params"]["trainable"] > 0
        assert [h["epoch"] for h in r["history"]] == [1] and r["history"][0]["loss"] > 0
        assert r["selection"] == {"rule": "last", "epoch": 1}
        assert r["weights"] == ("random" if r["model"] in ("alexnet", "vgg16", "resnet18") else None)
        assert r["test"]["set"] == "test" and r["metrics"]["n_test"] == 10
    test_ids = {tuple(r["test"]["ids"]) for r in records}
    assert len(test_ids) == 1                                   # exp2 is tested on exp1's clips
    assert all(not r["augmented"] and r["n_train"] == 10 for r in exp1)
    augment = load_experiment("exp2", "quick").prepare.augment  # quick: fewer stretches than the study's four
    variants = len(augment.stretch_factors) + 1                  # the stretches and the shift
    assert all(r["augmented"] and r["n_train"] == 10 * (1 + variants) for r in exp2)
    fc6 = next(r for r in exp1 if (r["model"], r["variant"]) == ("vgg16", "fc6"))
    assert fc6["params"] == {"total": 14_965_578, "trainable": 250_890}
    # every exp1 row's kept model answers its test clips through predict as its record says
    contains = {(r["model"], r["variant"]): json.loads((tmp_path / "r" / r["artifact"] / "model.json").read_text())
                ["network"]["contains"] for r in exp1}
    assert {k for k, v in contains.items() if v == "trained"} == {(n, f) for n in ("alexnet", "vgg16")
                                                                   for f in ("fc6", "fc7", "fc8")}
    assert_predictions_match_records(tmp_path / "r", exp1, capsys)
