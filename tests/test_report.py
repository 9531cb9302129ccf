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
                ids: list[str] | None = None, evaluated_on: str = "test", params: dict | None = None,
                weights: str | None = None, history: list[dict] | None = None, train: dict | None = None) -> dict:
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
            "bootstrap_index": bootstrap_index, "evaluate_on": evaluated_on, "params": {}, "train": train}
    settings = {"run": {"source": "synthetic", "profile": "quick", "data_hash": "d4t4", "hardware": "2 CPU"}}
    if status != "ok":
        return build_record(spec, settings, status=status,
                            error="Traceback (most recent call last):\nRuntimeError: worker died (OOM)")
    result = {"metrics": classification_metrics(y_true, pred),
              "test": {"ids": ids, "y_true": y_true, "y_pred": pred, "set": evaluated_on},
              "n_train": int(800 * train_fraction), "timings": {"fit_predict_s": 1.0, "total_s": 1.1},
              "params": params, "weights": weights, "history": history}
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


def test_wav2vec2_rows_fill_table3_and_recalls_and_random_backbones_are_not_compared(tmp_path):
    pretrained = "pretrained 'facebook/wav2vec2-base' from the Hugging Face cache (/hub/x/model.safetensors)"
    tiny = "random init (untrained), tiny Wav2Vec2 config (a smoke-test backbone)"
    write(tmp_path, [
        make_record("wav2vec2", 0.6, study="exp3-waveform", representation="waveform", variant="frozen",
                    weights=pretrained),
        make_record("wav2vec2", 0.7, study="exp3-waveform", representation="waveform", variant="progressive",
                    weights=tiny, rng_seed=1),
        make_record("wav2vec2", 0.65, study="exp3-waveform", representation="waveform", variant="layer_probe",
                    weights=pretrained, rng_seed=2)])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0]: line for line in table3.splitlines() if "Wav2Vec2" in line}
    frozen = next(v for k, v in rows.items() if "(frozen)" in k and "probe" not in k)
    progressive = next(v for k, v in rows.items() if "progressive" in k)
    probe = next(v for k, v in rows.items() if "probe" in k)
    assert "not run" not in frozen and "| 61 |" in frozen and "not comparable" not in frozen
    assert "not comparable" in progressive  # a random backbone is not the study's condition
    assert "not run" not in probe and "| — |" in probe  # beyond the study: no figure to compare
    recalls = text.split("### Per-genre recalls the study states")[1].split("\n#")[0]
    assert sum("Wav2Vec2 frozen |" in line for line in recalls.splitlines()) == 4  # classical, disco, metal, rock
    assert all("not comparable" in line for line in recalls.splitlines() if "Wav2Vec2 progressive" in line)


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


# --- spectrogram models: Table 1 both columns, Appendix A, random init, learning curves, exp2 vs exp1 -----------

PRETRAINED = "pretrained:IMAGENET1K_V1 (/root/.cache/torch/hub/checkpoints/{}.pth)"
DEEP_ROWS = [("cnn", "default"), ("crnn", "default"),
             *[(net, v) for net in ("alexnet", "vgg16") for v in ("fc6", "fc7", "fc8", "finetune_all")],
             ("resnet18", "last_then_all"), ("resnet18", "finetune_all")]
TABLE1_ROWS = [("cnn", "default"), ("crnn", "default"), ("alexnet", "finetune_all"), ("vgg16", "finetune_all"),
               ("resnet18", "last_then_all")]
PARAMS = {("vgg16", "finetune_all"): (134_301_514, 134_301_514), ("vgg16", "fc6"): (14_965_578, 250_890),
          ("resnet18", "last_then_all"): (11_181_642, 5_130)}


def history(epochs: int, final_acc: float, valid: bool = True) -> list[dict]:
    """A plausible per-epoch history: loss falling, accuracy rising to ``final_acc``."""
    out = []
    for e in range(1, epochs + 1):
        h = {"epoch": e, "loss": round(2.3 * 0.75 ** e, 4), "accuracy": round(final_acc * e / epochs, 4),
             "lr": 1e-3, "seconds": 1.5}
        if valid:
            h.update(valid_loss=round(2.3 * 0.8 ** e, 4), valid_accuracy=round(0.9 * final_acc * e / epochs, 4))
        out.append(h)
    return out


def deep_record(model: str, variant: str, accuracy: float, *, augmented: bool = False, rng_seed: int = 0,
                **kw) -> dict:
    """An exp1-mel / exp2-mel record with the fields a spectrogram trial writes."""
    total, trainable = PARAMS.get((model, variant), (1_000_000 + rng_seed, 1_000 + rng_seed))
    weights = None if model in ("cnn", "crnn") else (
        "random" if model == "resnet18" else PRETRAINED.format(model))
    return make_record(model, accuracy, study="exp2-mel" if augmented else "exp1-mel", representation="mel",
                       variant=variant, augmented=augmented, rng_seed=rng_seed,
                       params={"total": total, "trainable": trainable}, weights=weights,
                       history=history(6 if augmented else 5, min(1.0, accuracy + 0.2)),
                       train={"selection": "last", "epochs": 6 if augmented else 5}, **kw)


def deep_run(run_dir: Path) -> None:
    """Every Table 1 / Appendix A row on original clips, Table 1's five on augmented clips; ResNet18 random init."""
    recs = [deep_record(m, v, 0.55 + 0.02 * i, rng_seed=400 + i) for i, (m, v) in enumerate(DEEP_ROWS)]
    recs += [deep_record(m, v, 0.65 + 0.02 * i, augmented=True, rng_seed=500 + i)
             for i, (m, v) in enumerate(TABLE1_ROWS)]
    write(run_dir, recs)


@pytest.fixture(scope="module")
def deep_report(tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("deep")
    deep_run(run_dir)
    path = write_report(run_dir, run_dir / "report")
    return path, path.read_text()


def section(text: str, heading: str) -> str:
    return text.split(heading)[1].split("\n## ")[0]


def cells_of(block: str, start: str) -> list[str]:
    row = next(line for line in block.splitlines() if line.startswith(start))
    return [c.strip() for c in row.strip("|").split("|")]


def test_table1_both_columns_table3_and_appendix_a_filled(deep_report):
    _, text = deep_report
    table1 = section(text, "## Table 1")
    for label in ("| Custom CNN", "| Custom CRNN", "| AlexNet", "| VGG16", "| ResNet18"):
        cells = cells_of(table1, label)
        assert "not run" not in cells, label
        assert re.fullmatch(r"\d+\.\d–\d+\.\d", cells[2]) and re.fullmatch(r"\d+\.\d–\d+\.\d", cells[6]), cells
    vgg = cells_of(table1, "| VGG16")
    assert vgg[3] == "76" and vgg[7] == "84" and vgg[4] in ("yes", "**no**") and vgg[8] in ("yes", "**no**")
    table3 = section(text, "## Table 3")
    for line in (ln for ln in table3.splitlines() if ln.startswith("| Spectrogram")):
        assert "not run" not in line, line
    appendix = section(text, "## Appendix A")
    rows = [ln for ln in appendix.splitlines() if ln.startswith("| AlexNet") or ln.startswith("| VGG16")
            or ln.startswith("| ResNet18")]
    assert len(rows) == len(DEEP_ROWS) - 2 and not any("not run" in r for r in rows)
    assert cells_of(appendix, "| VGG16 | fine-tune, first FC")[2] == "`fc6`"
    assert cells_of(appendix, "| VGG16 | fine-tune, first FC")[-1] == "14,965,578 / 250,890"
    assert cells_of(appendix, "| VGG16 | unfreeze")[-1] == "134,301,514 / 134,301,514"
    resnet = [ln for ln in rows if ln.startswith("| ResNet18")]
    assert [r.split("|")[3].strip() for r in resnet] == ["`last_then_all`", "`finetune_all`"]
    assert "Not tried by the study" in appendix
    everything = section(text, "## All results")
    assert "| vgg16 finetune_all +aug | mel |" in everything and "134,301,514 / 134,301,514" in everything
    assert "pretrained:IMAGENET1K_V1" in everything and "/root/.cache" not in text  # no paths in the report


def test_random_init_rows_are_marked_not_the_studys_condition(deep_report):
    _, text = deep_report
    for heading in ("## Table 1", "## Table 3", "## Appendix A"):
        block = section(text, heading)
        note = next(ln for ln in block.splitlines() if "random init: not the study's condition" in ln)
        mark = note[0]
        resnet = [ln for ln in block.splitlines() if "ResNet18" in ln and ln.startswith("| ")]
        vgg = [ln for ln in block.splitlines() if "VGG16" in ln and ln.startswith("| ")]
        assert resnet and all(f" {mark} |" in ln and "not comparable" in ln for ln in resnet), (heading, resnet)
        assert vgg and not any("not comparable" in ln or f" {mark} |" in ln for ln in vgg), (heading, vgg)
    assert "| resnet18 last_then_all [random init] | mel |" in section(text, "## All results")
    assert "| vgg16 finetune_all | mel |" in section(text, "## All results")
    aug = cells_of(section(text, "## Augmentation"), "| resnet18 last_then_all [random init] |")
    assert aug[-1] == "not comparable"


def test_learning_curves_figure_written_and_linked(deep_report):
    path, text = deep_report
    curves = section(text, "## Learning curves")
    assert "![Learning curves: loss and accuracy per epoch, per model](fig-learning-curves.png)" in curves
    assert (path.parent / "fig-learning-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = cells_of(curves, "| vgg16 finetune_all +aug |")
    assert cells[1:4] == ["0", "6", "last epoch"] and cells[4] == f"{2.3 * 0.75 ** 6:.3f}"
    assert cells_of(curves, "| cnn |")[2] == "5"


def test_no_history_means_no_learning_curve_figure(report):
    path, text = report
    assert "no learning curves" in section(text, "## Learning curves")
    assert not (path.parent / "fig-learning-curves.png").exists()


def test_deep_report_is_deterministic(deep_report, tmp_path):
    path, text = deep_report
    again = write_report(path.parent.parent, tmp_path / "again")
    assert again.read_text() == text
    for name in ("fig-learning-curves.png", "fig-comparison.png"):
        assert (tmp_path / "again" / name).read_bytes() == (path.parent / name).read_bytes(), name


def paired_predictions(ids: list[str], both: int, a_only: int, b_only: int) -> tuple[list[str], list[str]]:
    """Predictions of A and B: right together on ``both`` clips, only A on ``a_only``, only B on ``b_only``."""
    truth = [i.split(".")[0] for i in ids]
    wrong = [GENRES[(GENRES.index(t) + 1) % 10] for t in truth]
    a, b = list(wrong), list(wrong)
    for i in range(both + a_only):
        a[i] = truth[i]
    for i in list(range(both)) + list(range(both + a_only, both + a_only + b_only)):
        b[i] = truth[i]
    return a, b


def test_augmentation_section_tests_exp2_against_exp1(tmp_path):
    ids = test_ids("paper", 0)
    vgg2, vgg1 = paired_predictions(ids, 100, 30, 10)  # exp2 right only on 30 clips, exp1 only on 10
    cnn2, cnn1 = paired_predictions(ids, 90, 12, 8)
    write(tmp_path, [deep_record("vgg16", "finetune_all", 0, y_pred=vgg1, ids=ids),
                     deep_record("vgg16", "finetune_all", 0, augmented=True, y_pred=vgg2, ids=ids),
                     deep_record("cnn", "default", 0, y_pred=cnn1, ids=ids),
                     deep_record("cnn", "default", 0, augmented=True, y_pred=cnn2, ids=ids),
                     deep_record("crnn", "default", 0.5, rng_seed=1),
                     deep_record("crnn", "default", 0.6, augmented=True, seed=1, rng_seed=2),
                     deep_record("alexnet", "finetune_all", 0.5, rng_seed=3),
                     deep_record("alexnet", "finetune_all", 0.6, augmented=True, rng_seed=4,
                                 ids=test_ids("paper", 7))])
    text = write_report(tmp_path, tmp_path / "out").read_text()
    aug = section(text, "## Augmentation (exp2 vs exp1)")
    vgg = cells_of(aug, "| vgg16 finetune_all |")
    assert vgg[1:5] == ["paper", "55.0", "65.0", "+10.0"]
    lo, hi = (float(x) for x in vgg[5].split(" to "))
    assert 0 < lo < 10 < hi < 20
    assert vgg[6:12] == ["30", "10", "0.002", "0.004", "+8", "yes"]  # exact McNemar 30 vs 10; Holm over 2 pairs
    cnn = cells_of(aug, "| cnn |")
    assert cnn[2:5] == ["49.0", "51.0", "+2.0"] and cnn[6:12] == ["12", "8", "0.503", "0.503", "+11", "**no**"]
    crnn = cells_of(aug, "| crnn |")
    assert crnn[8] == "no paired test: clips do not match" and "(unpaired, Newcombe)" in crnn[5]
    assert "no split seed in common (exp1 seeds 0; exp2 seeds 1)" in aug
    assert "`alexnet finetune_all` (paper): the exp1 and exp2 test clips do not match (the test clip ids differ" in aug
    assert "mean gain +6.0 points over 2 paired model(s); 1 significantly better" in aug
