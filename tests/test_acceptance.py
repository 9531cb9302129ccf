"""End to end on the demo's data (shorter clips): exp4 on synthetic GTZAN (quick), prepare to report."""

import pytest

from raygenre.records import read_records
from raygenre.sweep import main


@pytest.mark.slow
def test_exp4_on_synthetic_gtzan_quick_records_109_trials_and_a_realistic_accuracy(ray_session, tmp_path):
    # The demo's exp4 with 5 s clips instead of 10 s: half the feature extraction, the same 200 clips and
    # 109 trials (the demo itself runs the 10 s version).
    code = main(["exp4", "--profile", "quick", "--data", "synthetic", "--storage", str(tmp_path),
                 "--name", "acc", "--report-dir", str(tmp_path / "report"), "--set", "data.synthetic.seconds=5.0",
                 "--set", "prepare.clip_seconds=5.0", "--set", "prepare.min_seconds=3.0"])
    assert code == 0
    records = read_records(tmp_path / "acc")
    assert len(records) == 109 and len({r["trial_key"] for r in records}) == 109
    assert all(r["status"] == "ok" and r["model"] == "xgboost_tuned" for r in records)
    full = next(r for r in records if r["study"] == "exp4-size" and r["train_fraction"] == 1.0)
    # synthetic realism: a good classifier is well above chance (10 %) and below perfect
    assert 0.40 <= full["metrics"]["accuracy"] <= 0.95
    boot = sorted(r["metrics"]["accuracy"] for r in records if r["study"] == "exp4-bootstrap")
    assert 0.40 <= boot[50] <= 0.95
    assert full["n_train"] == 160 and len(full["test"]["ids"]) == 40   # 20 clips x 10 genres, 80/20
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## Experiment 4" in report and "fig-bootstrap.png" in report
    assert (tmp_path / "report" / "fig-bootstrap.png").stat().st_size > 10_000
