"""Dataset discovery: the three layouts, ignored files, clear errors."""

from pathlib import Path

import pytest

from raygenre.data.gtzan import GENRES, DatasetError, clip_id_from_filename, discover, genre_of


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("layout,sub,ext", [("kaggle", "genres_original", "wav"),
                                            ("original", "genres", "au"), ("flat", "", "wav")])
def test_discover_layouts(tmp_path, layout, sub, ext):
    for g in GENRES:
        for i in range(3):
            _touch(tmp_path / sub / g / f"{g}.{i:05d}.{ext}")
    found = discover(tmp_path)
    assert found.layout == layout
    assert len(found.clips) == 30
    assert found.counts() == {g: 3 for g in GENRES}
    assert found.ids[0] == "blues.00000" and found.labels[0] == "blues"
    assert found.ignored == []


def test_unmatched_files_are_listed_not_dropped(tmp_path):
    base = tmp_path / "genres_original"
    _touch(base / "jazz" / "jazz.00001.wav")
    _touch(base / "jazz" / "notes.txt")
    _touch(base / "jazz" / "rock.00002.wav")        # name disagrees with folder
    _touch(base / "jazz" / "jazz.1.wav")            # wrong number format
    _touch(base / "polka" / "polka.00000.wav")      # not a GTZAN genre
    found = discover(tmp_path)
    assert found.ids == ["jazz.00001"]
    reasons = {Path(item["path"]).name: item["reason"] for item in found.ignored}
    assert set(reasons) == {"notes.txt", "rock.00002.wav", "jazz.1.wav", "polka"}
    assert "folder is 'jazz'" in reasons["rock.00002.wav"]


def test_missing_and_empty_roots_are_one_sentence_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(DatasetError, match="holds no GTZAN layout"):
        discover(tmp_path)
    (tmp_path / "genres_original" / "rock").mkdir(parents=True)
    with pytest.raises(DatasetError, match="contains no"):
        discover(tmp_path)


def test_clip_ids():
    assert clip_id_from_filename("genres/jazz/jazz.00054.au") == "jazz.00054"
    assert genre_of("hiphop.00099") == "hiphop"
    with pytest.raises(DatasetError):
        clip_id_from_filename("jazz.54.wav")
    with pytest.raises(DatasetError):
        genre_of("polka.00001")
