"""Record Wav2Vec2 tiny frozen/layer_probe embeddings and predictions with the pre-move code (run once on HEAD)."""
import json, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, "tests")
import conftest  # noqa: env
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
from test_waveform_training import waveform_specs, write_wave_shards
from raygenre.data.embeddings import ensure_embeddings, load_embeddings
from raygenre.train.waveform_runner import run_waveform

root = Path(tempfile.mkdtemp())
ids = write_wave_shards(root, clips_per_genre=4)
specs = waveform_specs("frozen", "layer_probe")
caches = ensure_embeddings(root, specs, "hash0")
folder = next(iter(caches.values()))
feats, got, _ = load_embeddings(folder, ids)
order = [got.index(i) for i in ids]
out = {"ids": ids, "embeddings": np.asarray(feats[order]).round(6).tolist(), "shape": list(feats.shape), "trials": {}}
for spec in specs:
    res = run_waveform(spec, {"shard_dir": str(root), "ids": ids, "embeddings": caches},
                       {"run": {"data_hash": "hash0"}, "train_storage": str(root / "train")})
    out["trials"][spec["variant"]] = {"test_ids": res["test"]["ids"], "y_pred": res["test"]["y_pred"],
                                      "losses": [h["loss"] for h in res["history"]],
                                      "accuracy": res["metrics"]["accuracy"]}
Path(sys.argv[1]).write_text(json.dumps(out))
print("ok", out["shape"], {k: v["accuracy"] for k, v in out["trials"].items()})
