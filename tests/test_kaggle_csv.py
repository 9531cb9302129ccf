"""The Kaggle features CSV: exact header, named errors, feature sets."""

import numpy as np
import pandas as pd
import pytest

from raygenre.data.gtzan import GENRES, DatasetError
from raygenre.data.kaggle_csv import (
    FEATURE_SETS,
    KAGGLE_COLUMNS,
    KAGGLE_FEATURE_COLUMNS,
    feature_columns,
    read_features_csv,
)

REAL_HEADER = (
    "filename,length,chroma_stft_mean,chroma_stft_var,rms_mean,rms_var,spectral_centroid_mean,"
    "spectral_centroid_var,spectral_bandwidth_mean,spectral_bandwidth_var,rolloff_mean,rolloff_var,"
    "zero_crossing_rate_mean,zero_crossing_rate_var,harmony_mean,harmony_var,perceptr_mean,perceptr_var,"
    "tempo,mfcc1_mean,mfcc1_var,mfcc2_mean,mfcc2_var,mfcc3_mean,mfcc3_var,mfcc4_mean,mfcc4_var,mfcc5_mean,"
    "mfcc5_var,mfcc6_mean,mfcc6_var,mfcc7_mean,mfcc7_var,mfcc8_mean,mfcc8_var,mfcc9_mean,mfcc9_var,"
    "mfcc10_mean,mfcc10_var,mfcc11_mean,mfcc11_var,mfcc12_mean,mfcc12_var,mfcc13_mean,mfcc13_var,"
    "mfcc14_mean,mfcc14_var,mfcc15_mean,mfcc15_var,mfcc16_mean,mfcc16_var,mfcc17_mean,mfcc17_var,"
    "mfcc18_mean,mfcc18_var,mfcc19_mean,mfcc19_var,mfcc20_mean,mfcc20_var,label"
)


def _write(path, header=REAL_HEADER, rows=None, clips=2):
    rng = np.random.default_rng(0)
    if rows is None:
        rows = []
        for g in GENRES:
            for i in range(clips):
                values = ",".join(f"{v:.6f}" for v in rng.normal(size=57))
                rows.append(f"{g}.{i:05d}.wav,661794,{values},{g}")
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_real_header_is_the_schema():
    assert ",".join(KAGGLE_COLUMNS) == REAL_HEADER
    assert len(FEATURE_SETS["content57"]) == 57 and len(FEATURE_SETS["kaggle58"]) == 58
    assert feature_columns("kaggle58")[0] == "length"


def test_reads_real_header_keyed_by_clip_id(tmp_path):
    table = read_features_csv(_write(tmp_path / "f.csv"))
    assert table.shape == (20, 59)
    assert table.index[0] == "blues.00000" and table.loc["rock.00001", "label"] == "rock"
    assert list(table.columns) == ["label", "length", *KAGGLE_FEATURE_COLUMNS]
    assert table["length"].iloc[0] == 661794.0


def test_au_filenames_are_accepted(tmp_path):
    rows = [f"jazz.00054.au,661500,{','.join(['0.5'] * 57)},jazz"]
    assert read_features_csv(_write(tmp_path / "f.csv", rows=rows)).index.tolist() == ["jazz.00054"]


def test_missing_column_is_named(tmp_path):
    header = REAL_HEADER.replace("rms_var,", "")
    with pytest.raises(DatasetError, match="missing column 'rms_var'"):
        read_features_csv(_write(tmp_path / "f.csv", header=header, rows=[]))


def test_renamed_column_is_named(tmp_path):
    header = REAL_HEADER.replace("tempo", "bpm")
    with pytest.raises(DatasetError, match="missing column 'tempo'.*'bpm'"):
        read_features_csv(_write(tmp_path / "f.csv", header=header, rows=[]))


def test_non_numeric_value_names_column_and_row(tmp_path):
    path = _write(tmp_path / "f.csv")
    frame = pd.read_csv(path, dtype=str)
    frame.loc[3, "mfcc7_var"] = "abc"
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match=r"column 'mfcc7_var', row 5: value 'abc'"):
        read_features_csv(path)


def test_infinite_value_and_label_mismatch_are_rejected(tmp_path):
    path = _write(tmp_path / "f.csv")
    frame = pd.read_csv(path, dtype=str)
    frame.loc[0, "tempo"] = "inf"
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="'tempo'.*finite"):
        read_features_csv(path)
    rows = [f"jazz.00001.wav,1,{','.join(['0'] * 57)},blues"]
    with pytest.raises(DatasetError, match="row 2: label 'blues' disagrees"):
        read_features_csv(_write(tmp_path / "g.csv", rows=rows))


def test_missing_file_is_one_sentence(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_features_csv(tmp_path / "none.csv")
    with pytest.raises(DatasetError, match="unknown feature set"):
        feature_columns("all60")
