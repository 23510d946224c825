"""The shipped paper configs (``avaffect/configs/papers/<paper>/<row>.yaml``): one per result-table row, each naming
its row with the numbers the paper printed and the quote behind every setting, each resolving to the values the
paper states (``avaffect/configs/paper_values/<paper>.yaml``, the one table of stated values), each training."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from shareddata import SHARED, require

from avaffect.config import load_config
from avaffect.features.extractors import get_extractor
from avaffect.features.run_features import RecordingFeatures
from avaffect.models.registry import model_config
from avaffect.shipped import PAPER_CONFIG_DIR, paper_config_names
from avaffect.training.datamodule import WindowDataModule
from avaffect.training.module import AffectRegressionModule
from avaffect.training.run import build_model

CONFIGS = Path(str(resources.files("avaffect").joinpath(*PAPER_CONFIG_DIR)))
SHEETS = Path(str(resources.files("avaffect").joinpath("configs", "paper_values")))
PAPER_DIRS = {"rja_blstm": "rja_blstm_icassp2023", "hgrjca_abaw6": "hgrjca_abaw6_2024",
              "abaw8": "grjca_hgrjca_abaw8_2025", "dlstm_att": "dlstm_att_lucas"}
ROWS = [n for n in paper_config_names() if not n.startswith("extras/")]
ALL = paper_config_names()


def _sheet(folder: str) -> dict:
    return yaml.safe_load((SHEETS / f"{PAPER_DIRS[folder]}.yaml").read_text())


def _paper_text(file: str) -> str:
    text = require(SHARED / "papers" / file, f"the paper {file}").read_text(encoding="utf-8", errors="replace")
    return re.sub(r"\s+", " ", text)


def _quote_found(quote: str, text: str) -> bool:
    if quote.startswith("["):  # a paraphrase of an equation (the text file's math is garbled)
        return True
    pieces = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\s*(?:…|\.\.\.)\s*", quote)]
    return all(p in text for p in pieces if p)


def _resolved(cfg, key: str):
    if key.startswith("model.params."):
        return getattr(model_config(cfg.model.name, cfg.model_params()), key[len("model.params."):])
    node = cfg.model_dump(mode="json")
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def test_every_paper_has_its_rows_and_its_sheet():
    folders = {n.split("/")[0] for n in ALL}
    assert set(PAPER_DIRS) <= folders and len(ROWS) >= 40
    for folder in PAPER_DIRS:
        sheet = _sheet(folder)
        listed = {r["config"] for r in sheet["row_configs"]}
        present = {f"{n}.yaml" for n in ROWS if n.startswith(folder + "/")}
        assert listed == present, f"{folder}: row_configs vs files: {sorted(listed ^ present)}"
        assert sheet["stated"] and isinstance(sheet["unstated"], list)
        assert {"rows_without_config", "inconsistencies", "not_yet_supported"} <= set(sheet)


@pytest.mark.parametrize("name", ROWS)
def test_a_row_config_names_its_row_and_resolves_to_the_stated_values(name):
    folder = name.split("/")[0]
    sheet = _sheet(folder)
    cfg = load_config(name)
    paper = cfg.paper
    assert paper is not None and paper.paper == sheet["paper"]
    assert paper.table and paper.row and paper.reported and paper.settings
    assert all(v is None or -1 <= v <= 1 for v in paper.reported.values())
    text = _paper_text(sheet["paper"])
    missing = [k for k, q in paper.settings.items() if not _quote_found(q, text)]
    assert not missing, f"{name}: quotes not in the paper for {missing}"
    for key, entry in sheet["stated"].items():
        assert _resolved(cfg, key) == entry["value"], f"{name}: {key} = {_resolved(cfg, key)!r}, paper: {entry}"
    for key in paper.settings:
        _resolved(cfg, key)  # every setting the header quotes is a key the config has


@pytest.mark.parametrize("folder", sorted(PAPER_DIRS))
def test_the_sheets_quote_the_papers(folder):
    sheet = _sheet(folder)
    text = _paper_text(sheet["paper"])
    for section in ("stated", "row_specific"):
        bad = [k for k, e in (sheet.get(section) or {}).items() if not _quote_found(e["quote"], text)]
        assert not bad, f"{folder}: {section} quotes not found verbatim: {bad}"


def test_config_show_prints_a_rows_stated_values(capsys):
    """Spot check per paper: the resolved config a user sees is the paper's."""
    from avaffect.cli.main import main

    for folder in PAPER_DIRS:
        name = next(n for n in ROWS if n.startswith(folder + "/"))
        assert main(["config", "show", name]) == 0
        shown = yaml.safe_load(capsys.readouterr().out)
        for key, entry in _sheet(folder)["stated"].items():
            if key.startswith("model.params.") and key[len("model.params."):] not in shown["model"]["params"]:
                continue  # a preset default: resolved through the preset (checked above)
            node = shown
            for part in key.split("."):
                node = node[part]
            assert node == entry["value"], f"{name}: {key}"


def _feats(n: int, t: int, d_a: int, d_v: int, k: int, seed: int) -> list[RecordingFeatures]:
    rng = np.random.default_rng(seed)
    return [RecordingFeatures(f"r{i}", rng.normal(size=(t, d_a)).astype(np.float32),
                              rng.normal(size=(t, d_v)).astype(np.float32),
                              np.tanh(rng.normal(size=(t, k))).astype(np.float32), np.ones(t, bool),
                              np.arange(t) / 25.0) for i in range(n)]


@pytest.mark.parametrize("name", ALL)
def test_every_config_trains_a_few_steps(name):
    """Each row's model with its own training settings (loss, optimiser, warm-up, ...), weight-free features,
    for two optimisation steps; the loss must be finite and the weights must move."""
    cfg = load_config(name, {"data": {"root": "/nonexistent"}}).weight_free()
    d_a, d_v = (get_extractor(s.name, **s.params).dim for s in (cfg.features.audio, cfg.features.video))
    torch.manual_seed(0)
    model = build_model(cfg, d_a, d_v)
    window, k = cfg.training.window, len(cfg.training.targets)
    val = _feats(1, window, d_a, d_v, k, 1)
    module = AffectRegressionModule(model, cfg.training, val, cfg.evaluation.protocol, tuple(cfg.training.targets))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[Record()])
    trainer.fit(module, datamodule=WindowDataModule(_feats(2, window, d_a, d_v, k, 0), val, window, window, 2))
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
