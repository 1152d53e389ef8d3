"""Exports are byte-for-byte reproducible: equal weights give an equal model.safetensors (and so an
equal sha256, which latent files record) in every process."""

import hashlib
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load, save

from ul.artifacts.export import canonical

SAVE = """
import sys, torch
from ul.params import preset_config
from pathlib import Path

import pytest
from ul.artifacts import export
from ul.core.model import BaseModel
cfg = preset_config(Path(sys.argv[2]), "ci")
torch.manual_seed(0)
export.save(BaseModel(cfg), cfg, sys.argv[1], {"steps": 1})
"""


@pytest.mark.slow
def test_the_same_weights_export_to_the_same_bytes_in_every_process(tmp_path):
    from conftest import ROOT

    digests = set()
    for k in range(4):  # the writer's header order changes with each process's hash seed
        subprocess.run([sys.executable, "-c", SAVE, str(tmp_path / f"m{k}"), str(ROOT / "conf")], check=True)
        digests.add(hashlib.sha256((tmp_path / f"m{k}" / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_canonical_keeps_every_tensor_and_the_metadata():
    state = {"b.weight": torch.randn(3, 3), "a.bias": torch.zeros(3), "n": torch.arange(4)}
    data = canonical(save(state, metadata={"format": "f", "class": "c"}))
    back = load(data)
    assert back.keys() == state.keys() and all(torch.equal(back[k], v) for k, v in state.items())
    assert data[8:].startswith(b'{"__metadata__":{"class":"c","format":"f"}')


def test_an_export_written_before_the_rename_to_unified_still_loads(tiny_export, tmp_path):
    """Exports from before the config section `ul` and `latent: ul` were renamed `unified`."""
    import json
    import shutil

    from ul.artifacts import export

    old = tmp_path / "old"
    shutil.copytree(tiny_export / "stage1", old)
    meta = json.loads((old / "config.json").read_text())
    config = meta["config"]
    meta["config"] = {("ul" if k == "unified" else k): v for k, v in config.items()} | {"latent": "ul"}
    (old / "config.json").write_text(json.dumps(meta))
    model, cfg = export.load(old)
    assert cfg == export.load(tiny_export / "stage1")[1] and cfg.latent == "unified"
    assert type(model).__name__ == "UnifiedLatents"
