"""How tests/data/wav2vec2_probe_golden.json was made: run once at commit aa03ba2, before the encoder stage.

Wav2Vec2's ``frozen`` and ``layer_probe`` rows on the package's tiny random backbone (the shards and specs of
tests/test_waveform_training.py): every clip's cached embeddings, then each row's per-epoch losses and test
predictions. The golden test asserts the encoder stage gives the same. Usage (repo root):
``.venv/bin/python tests/data/make_wav2vec2_probe_golden.py OUT.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def main(out: str) -> None:
    import ray

    sys.path.insert(0, "tests")
    import conftest  # noqa: F401  (the test session's Ray settings)
    from test_waveform_training import waveform_specs, write_wave_shards

    from raygenre.data.embeddings import ensure_embeddings, load_embeddings
    from raygenre.train.waveform_runner import run_waveform

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False)
    root = Path(tempfile.mkdtemp())
    ids = write_wave_shards(root, clips_per_genre=4)
    specs = waveform_specs("frozen", "layer_probe")
    caches = ensure_embeddings(root, specs, "hash0")
    feats, got, _ = load_embeddings(next(iter(caches.values())), ids)
    feats = feats[[got.index(i) for i in ids]]
    result = {"ids": ids, "embeddings": np.asarray(feats).round(6).tolist(), "shape": list(feats.shape), "trials": {}}
    for spec in specs:
        res = run_waveform(spec, {"shard_dir": str(root), "ids": ids, "embeddings": caches},
                           {"run": {"data_hash": "hash0"}, "train_storage": str(root / "train")})
        result["trials"][spec["variant"]] = {"test_ids": res["test"]["ids"], "y_pred": res["test"]["y_pred"],
                                             "losses": [h["loss"] for h in res["history"]],
                                             "accuracy": res["metrics"]["accuracy"]}
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
