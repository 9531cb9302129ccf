"""The reporter on constructed records: tables, "not run" rows, paired tests, figures, CLI errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raygenre.genres import GENRES
from raygenre.records import RecordsError, append_record, build_record
from raygenre.reference import load_study
from raygenre.report import build_report, write_report
from raygenre.report.__main__ import main
from raygenre.stats import classification_metrics

ALL_IDS = [f"{g}.{i:05d}" for g in GENRES for i in range(100)]
FEATURE_MODELS = {"knn": 0.62, "random_forest": 0.74, "xgboost": 0.77, "xgboost_tuned": 0.79, "mlp": 0.73,
                  "lstm": 0.55}


def test_ids(split: str, seed: int) -> list[str]:
    """Stratified 20 clips per genre, fixed by split name and seed (fault_filtered: a different draw)."""
    rng = np.random.default_rng(seed + (1000 if split == "fault_filtered" else 0))
    return [f"{g}.{i:05d}" for g in GENRES for i in sorted(rng.choice(100, 20, replace=False))]


test_ids.__test__ = False  # a helper, not a test


def predictions(ids: list[str], accuracy: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    y_true = [i.split(".")[0] for i in ids]
    y_pred = [t if rng.random() < accuracy else str(rng.choice([g for g in GENRES if g != t])) for t in y_true]
    return y_true, y_pred


FAMILY = {"features": "tabular", "mel": "spectrogram", "waveform": "waveform"}


def make_record(model: str, accuracy: float = 0.7, *, study: str = "exp3-features", representation: str = "features",
                variant: str = "default", feature_set: str | None = "kaggle58", augmented: bool = False,
                split: str = "paper", seed: int = 0, train_fraction: float = 1.0, bootstrap_index: int | None = None,
                status: str = "ok", rng_seed: int = 0, y_pred: list[str] | None = None,
                ids: list[str] | None = None, evaluated_on: str = "test") -> dict:
    """A record made by the sweep's own builder, with random predictions at about ``accuracy``."""
    rng = np.random.default_rng(rng_seed)
    ids = ids or test_ids(split, seed)
    y_true, pred = predictions(ids, accuracy, rng)
    pred = y_pred or pred
    key = f"{study}/{model}/{variant}/{feature_set}/{split}-{seed}/f{train_fraction}/b{bootstrap_index}/a{augmented}"
    spec = {"trial_key": key, "experiment": study.split("-")[0], "study": study, "model": model,
            "family": FAMILY[representation], "variant": variant, "representation": representation,
            "feature_set": feature_set if representation == "features" else None, "augmented": augmented,
            "split": {"name": split, "seed": seed, "test_fraction": 0.2}, "train_fraction": train_fraction,
            "bootstrap_index": bootstrap_index, "evaluate_on": evaluated_on, "params": {}}
    settings = {"run": {"source": "synthetic", "profile": "quick", "data_hash": "d4t4", "hardware": "2 CPU"}}
    if status != "ok":
        return build_record(spec, settings, status=status,
                            error="Traceback (most recent call last):\nRuntimeError: worker died (OOM)")
    result = {"metrics": classification_metrics(y_true, pred),
              "test": {"ids": ids, "y_true": y_true, "y_pred": pred, "set": evaluated_on},
              "n_train": int(800 * train_fraction), "timings": {"fit_predict_s": 1.0, "total_s": 1.1}}
    record = build_record(spec, settings, result=result, resources={"cpu": 1.0, "gpu": 0.0, "node": "10.0.0.1"})
    record["finished_at"] = f"2025-01-01T00:{rng_seed % 60:02d}:00Z"  # fixed: reports are compared byte for byte
    return record


def write(run_dir: Path, records: list[dict]) -> None:
    for rec in records:
        append_record(run_dir / "records" / f"{rec['study']}.jsonl", rec)


def full_run(run_dir: Path) -> None:
    """Feature models on two seeds and both feature sets, a fault_filtered split, exp4, one failure."""
    recs, n = [], 0
    for model, acc in FEATURE_MODELS.items():
        for fs, drop in (("kaggle58", 0.0), ("content57", 0.04)):
            for seed in (0, 1):
                n += 1
                recs.append(make_record(model, acc - drop, feature_set=fs, seed=seed, rng_seed=n))
        n += 1
        recs.append(make_record(model, acc - 0.15, split="fault_filtered", rng_seed=n))
    for b in range(12):
        recs.append(make_record("xgboost_tuned", 0.74, study="exp4-bootstrap", bootstrap_index=b, rng_seed=100 + b))
    for i, frac in enumerate((0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)):
        recs.append(make_record("xgboost_tuned", 0.5 + 0.3 * frac, study="exp4-size", train_fraction=frac,
                                rng_seed=200 + i))
    recs.append(make_record("lstm", status="failed", variant="big", rng_seed=300))
    write(run_dir, recs)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("run")
    full_run(run_dir)
    path = write_report(run_dir, run_dir / "report")
    return path, path.read_text()


def test_every_table_heading_and_row(report):
    _, text = report
    study = load_study()
    for heading in ("## Table 1", "## Table 3", "## Appendix A", "## Experiment 4", "### Bootstrap resamples",
                    "### Accuracy per training fraction", "## Paired tests", "## Validity", "## Per-genre results",
                    "## All results", "## Failed trials"):
        assert heading in text, heading
    for name in ("table1", "table3", "appendix_a"):
        for row in study[name]["rows"]:
            assert row["label"] in text, row["label"]


def test_rows_without_records_say_not_run(report):
    _, text = report
    table1 = text.split("## Table 1")[1].split("\n## ")[0]
    vgg = next(line for line in table1.splitlines() if line.startswith("| VGG16"))
    assert vgg.count("not run") == 2 and "| 76 |" in vgg and "| 84 |" in vgg
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    assert next(line for line in table3.splitlines() if "base Wav2Vec2" in line).count("not run") == 1


def test_feature_rows_show_mean_std_seeds_and_interval(report):
    _, text = report
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    row = next(line for line in table3.splitlines() if "XGBoost (tuned)" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d \(\d+\.\d / \d+\.\d\)", cells[1]), cells[1]
    assert re.fullmatch(r"\d+\.\d–\d+\.\d", cells[2]) and cells[3] == "79" and cells[4] in ("yes", "**no**")


def test_chance_row_and_footnote(report):
    _, text = report
    assert "10 (chance)" in text and "(guessing, n=200)" in text
    assert "62.5 %" in text  # the study's text-vs-table discrepancy for the CNN is footnoted


def test_exp4_sections_filled(report):
    _, text = report
    exp4 = text.split("## Experiment 4")[1].split("\n## ")[0]
    assert "12 bootstrap resamples" in exp4 and "| Accuracy |" in exp4 and "| Macro-F1 |" in exp4
    for frac in ("20 %", "50 %", "90 %", "100 %"):
        assert f"| {frac} |" in exp4
    assert "highest accuracy at 90 %" in exp4 and "slight dip at 100 %" in exp4


def test_paired_and_validity_sections(report):
    _, text = report
    paired = text.split("## Paired tests")[1].split("\n## ")[0]
    assert "### Split `paper`: best model" in paired and "### Split `fault_filtered`" in paired
    assert "Holm" in paired and "2000 paired bootstrap resamples" in paired
    validity = text.split("## Validity")[1].split("\n## ")[0]
    assert "Not run" not in validity
    assert "| xgboost_tuned | paper |" in validity  # kaggle58 vs content57
    assert "Newcombe" in validity


def test_failed_trials_listed(report):
    _, text = report
    failed = text.split("## Failed trials")[1]
    assert "RuntimeError: worker died (OOM)" in failed and "`exp3-features/lstm/big" in failed


def test_header_fields(report):
    _, text = report
    head = text.split("## How to read")[0]
    for fact in ("synthetic", "quick", "`paper`, seed(s) 0, 1, 200 test clips", "kaggle58", "2 CPU",
                 "ray 2.60.0", "xgboost 3.2.0", "exp3-features: 30 ok, 1 failed"):
        assert fact in head, fact


def test_figures_exist_and_are_referenced(report):
    path, text = report
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert refs and all((path.parent / r).is_file() for r in refs)
    names = set(refs)
    for expected in ("fig-comparison.png", "fig-recall-heatmap.png", "fig-bootstrap.png", "fig-training-size.png",
                     "fig-pvalues-paper.png"):
        assert expected in names
    assert sum(n.startswith("fig-confusion-") for n in names) == len(FEATURE_MODELS)
    assert (path.parent / "fig-comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_is_deterministic(report, tmp_path):
    path, text = report
    again = write_report(path.parent.parent, tmp_path / "again")
    assert again.read_text() == text
    assert (tmp_path / "again" / "fig-comparison.png").read_bytes() == (path.parent / "fig-comparison.png").read_bytes()


def test_hand_built_pair_gives_exact_mcnemar(tmp_path):
    ids = test_ids("paper", 0)
    truth = [i.split(".")[0] for i in ids]
    wrong = [GENRES[(GENRES.index(t) + 1) % 10] for t in truth]
    # A right on every clip except 2..3 and 20..29 ... build b = 10 (A only), c = 2 (B only)
    a_pred, b_pred = list(truth), list(truth)
    for i in range(10):
        b_pred[i] = wrong[i]  # A right, B wrong
    for i in range(10, 12):
        a_pred[i] = wrong[i]  # A wrong, B right
    for i in range(12, 40):
        a_pred[i] = b_pred[i] = wrong[i]  # both wrong: concordant
    write(tmp_path, [make_record("xgboost", y_pred=a_pred, ids=ids), make_record("knn", y_pred=b_pred, ids=ids)])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    paired = text.split("## Paired tests")[1].split("\n## ")[0]
    row = next(line for line in paired.splitlines() if line.startswith("| knn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:8] == ["10", "2", "0.039", "0.039"]
    assert cells[2] == "+4.0"  # (10 - 2) / 200


def test_deep_model_records_slot_into_the_tables(tmp_path):
    write(tmp_path, [make_record("vgg16", 0.8, study="exp1", representation="mel", variant="finetune_all"),
                     make_record("vgg16", 0.85, study="exp2", representation="mel", variant="finetune_all",
                                 augmented=True, rng_seed=1),
                     make_record("alexnet", 0.6, study="exp1", representation="mel", variant="fc7", rng_seed=2)])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    table1 = text.split("## Table 1")[1].split("\n## ")[0]
    vgg = next(line for line in table1.splitlines() if line.startswith("| VGG16"))
    assert "not run" not in vgg
    appendix = text.split("## Appendix A")[1].split("\n## ")[0]
    fc7 = next(line for line in appendix.splitlines() if "`fc7`" in line)
    assert "not run" not in fc7 and "59.5" in fc7
    assert next(line for line in appendix.splitlines() if "`fc6`" in line).count("not run") == 1
    exp4 = text.split("## Experiment 4")[1].split("\n## ")[0]
    assert "not run" in exp4
    validity = text.split("## Validity")[1].split("\n## ")[0]
    assert validity.count("Not run") == 2


def test_only_failed_trials_still_report(tmp_path):
    write(tmp_path, [make_record("knn", status="failed"), make_record("xgboost_tuned", status="failed",
                                                                      study="exp4-bootstrap", bootstrap_index=0)])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    assert "2 trial(s) failed" in text and "nothing to pair" in text
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    assert table3.count("not run") == len(load_study()["table3"]["rows"])
    assert not list((tmp_path / "out").glob("fig-*.png"))


def test_validation_selection_trials_are_not_model_rows(tmp_path):
    sel = make_record("random_forest", 0.9, study="exp4-select", rng_seed=4, evaluated_on="valid")
    write(tmp_path, [sel, make_record("knn", 0.6)])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    assert next(line for line in table3.splitlines() if "Random Forest" in line).count("not run") == 1
    exp4 = text.split("## Experiment 4")[1].split("\n## ")[0]
    assert "validation clips" in exp4 and "| random_forest |" in exp4


def test_build_report_from_records_only(tmp_path):
    path = build_report([make_record("knn", 0.6)], tmp_path / "r")
    assert path.name == "REPORT.md" and "## Table 3" in path.read_text()


@pytest.mark.parametrize("layout", ["missing", "empty_dir", "empty_file"])
def test_no_records_is_a_one_sentence_error(tmp_path, capsys, layout):
    if layout != "missing":
        (tmp_path / "records").mkdir()
    if layout == "empty_file":
        (tmp_path / "records" / "exp3-features.jsonl").write_text("")
    with pytest.raises(RecordsError):
        write_report(tmp_path, tmp_path / "out")
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no records found") and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "REPORT.md").exists()


def test_cli_writes_report_and_default_out_dir(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run-a"
    write(run_dir, [make_record("knn", 0.6)])
    assert main([str(run_dir), "--out", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "rep" / "REPORT.md")
    monkeypatch.chdir(tmp_path)
    assert main([str(run_dir)]) == 0
    assert (tmp_path / "reports" / "run-a" / "REPORT.md").is_file()


def test_cli_module_error_has_no_traceback(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "raygenre.report", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
