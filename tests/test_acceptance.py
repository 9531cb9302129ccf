"""End to end on the demo's data (shorter clips): exp4 on synthetic GTZAN (quick), prepare to report."""

import pytest

from raygenre.records import read_records
from raygenre.sweep import main


@pytest.mark.slow
def test_exp4_on_synthetic_gtzan_quick_records_every_trial_and_a_realistic_accuracy(ray_session, tmp_path):
    # The demo's exp4 with 5 s clips instead of 10 s (half the feature extraction) and 10 bootstraps
    # instead of 100 (each is a ~1.3 s tuned-XGBoost fit): the same 200 clips and 9 training sizes. The
    # demo runs the full 109 trials; tests/test_sweep.py checks that the quick plan has 109.
    code = main(["exp4", "--profile", "quick", "--data", "synthetic", "--storage", str(tmp_path),
                 "--name", "acc", "--report-dir", str(tmp_path / "report"), "--set", "data.synthetic.seconds=5.0",
                 "--set", "prepare.clip_seconds=5.0", "--set", "prepare.min_seconds=3.0",
                 "--set", "exp4.bootstraps=10"])
    assert code == 0
    records = read_records(tmp_path / "acc")
    assert len(records) == 19 and len({r["trial_key"] for r in records}) == 19
    assert all(r["status"] == "ok" and r["model"] == "xgboost_tuned" for r in records)
    full = next(r for r in records if r["study"] == "exp4-size" and r["train_fraction"] == 1.0)
    # synthetic realism: a good classifier is well above chance (10 %) and below perfect
    assert 0.40 <= full["metrics"]["accuracy"] <= 0.95
    boot = sorted(r["metrics"]["accuracy"] for r in records if r["study"] == "exp4-bootstrap")
    assert len(boot) == 10 and 0.40 <= boot[5] <= 0.95
    assert full["n_train"] == 160 and len(full["test"]["ids"]) == 40   # 20 clips x 10 genres, 80/20
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## Experiment 4" in report and "fig-bootstrap.png" in report
    assert (tmp_path / "report" / "fig-bootstrap.png").stat().st_size > 10_000
