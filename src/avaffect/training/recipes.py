"""Multi-stage training recipes. DLSTM-ATT (docs/design.md §4.5): pre-train the unimodal DLSTMs, freeze them, train
the fusion.

Two entry points, one per level:

- :func:`pretrain_then_fuse` — the run-level driver used for experiments. Stage 1 trains each DLSTM of
  the fusion preset *as its own model* (the ``dlstm`` preset with ``modality`` audio / video / joint,
  the same :class:`~avaffect.models.blocks.dlstm.DLSTM` class and settings) with the ordinary
  :func:`avaffect.training.run.train` — Lightning, CCC loss, early stopping on validation, the
  embedding-attention bypass through ``set_epoch`` — into ``RUN/pretrain/<branch>/``. Stage 2 trains
  the fusion preset with ``freeze_unimodal: true`` into ``RUN/`` with the same ``train``, its DLSTMs
  initialised from the stage-1 best weights (``train``'s ``init`` loads them into the freshly built model,
  so the saved fusion checkpoint does not depend on the stage-1 files). Reusing ``train`` for both stages
  keeps everything a run has (resume, run directory, best-model selection, predictions); each stage resumes
  or is skipped when finished.
- :func:`pretrain_then_fuse_loop` — the same recipe as plain PyTorch loops (Adam, CCC loss, fixed
  epochs, no validation) over in-memory batches, for notebooks and tests.

"Unimodal" DLSTMs here means every DLSTM branch of the fusion model, including the early-fusion one
of ``dlstm_early_late`` (it is a regressor of its own, pre-trained like the others).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file
from torch import nn

from avaffect.config import RunConfig, make_config
from avaffect.errors import ConfigError
from avaffect.models.presets.dlstm import (
    DLSTMBranchConfig,
    DLSTMFusionConfig,
    DLSTMFusionModel,
    branch_input,
)
from avaffect.models.registry import model_config
from avaffect.training import run as _run
from avaffect.training.losses import ccc_loss
from avaffect.training.summary import write_summary

log = logging.getLogger(__name__)


def _fusion_net(model: nn.Module) -> DLSTMFusionModel:
    net = getattr(model, "net", model)  # an AVRegressor or the bare preset
    if not isinstance(net, DLSTMFusionModel):
        raise TypeError(f"expected a DLSTM fusion model (dlstm_att, ...), got {type(net).__name__}")
    return net


def unimodal_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every DLSTM branch."""
    return list(_fusion_net(model).branches.parameters())


def fusion_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the fusion (bimodal attention, OLB or HLB)."""
    return list(_fusion_net(model).fusion.parameters())


def freeze_unimodal(model: nn.Module) -> None:
    """Freeze the DLSTMs: no gradient, eval mode (no dropout) even under ``model.train()``, and no
    further change of their embedding-attention bypass by ``set_epoch``."""
    _fusion_net(model).freeze_branches()


# -- plain PyTorch loops -------------------------------------------------------------------------------

def _epochs(model: nn.Module, params: list[nn.Parameter], batches: Iterable[dict[str, torch.Tensor]], epochs: int,
            lr: float, weight_decay: float, loss_fn, set_epoch) -> list[float]:
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = []
    for epoch in range(epochs):
        set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for batch in batches:
            loss = loss_fn(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, count = total + loss.item(), count + 1
        history.append(total / max(count, 1))
    return history


def pretrain_unimodal(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], epochs: int, lr: float = 1e-3,
                      weight_decay: float = 0.0, loss_reduction: str = "batch") -> dict[str, list[float]]:
    """Stage 1: train each DLSTM branch alone on its input with the CCC loss on its own prediction.

    ``batches``: a re-iterable of dicts with ``audio [B, L, d_a]``, ``video [B, L, d_v]``, ``mask [B, L]``,
    ``labels [B, L, K]`` (already normalised: this works on the bare preset, not the ``AVRegressor``).
    Returns the mean loss per epoch of each branch.
    """
    net = _fusion_net(model)
    if net.branches_frozen:
        raise ValueError("the DLSTMs are frozen; pre-train before freezing")
    history = {}
    for name, branch in net.branches.items():
        def loss_fn(batch, name=name, branch=branch):
            y, _ = branch(branch_input(name, batch["audio"], batch["video"]), batch["mask"])
            return ccc_loss(y, batch["labels"], batch["mask"], reduction=loss_reduction)

        history[name] = _epochs(branch, list(branch.parameters()), batches, epochs, lr, weight_decay, loss_fn,
                                branch.set_epoch)
    return history


def train_fusion(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], epochs: int, lr: float = 1e-3,
                 weight_decay: float = 0.0, loss_reduction: str = "batch") -> list[float]:
    """Stage 2: freeze the DLSTMs (if not yet) and train only the fusion with the CCC loss on its output."""
    net = _fusion_net(model)
    freeze_unimodal(net)

    def loss_fn(batch):
        z = net(batch["audio"], batch["video"], batch["mask"])
        return ccc_loss(z, batch["labels"], batch["mask"], reduction=loss_reduction)

    return _epochs(net, fusion_parameters(net), batches, epochs, lr, weight_decay, loss_fn, net.set_epoch)


def pretrain_then_fuse_loop(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], pretrain_epochs: int,
                            fusion_epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
                            loss_reduction: str = "batch") -> dict[str, list[float]]:
    """The whole recipe as plain loops; returns the per-epoch losses (``<branch>`` and ``fusion``)."""
    history = pretrain_unimodal(model, batches, pretrain_epochs, lr, weight_decay, loss_reduction)
    history["fusion"] = train_fusion(model, batches, fusion_epochs, lr, weight_decay, loss_reduction)
    return history


# -- run-level driver ----------------------------------------------------------------------------------

@dataclass
class RecipeResult:
    """``fusion``: the stage-2 run (with ``protocol.repetitions`` > 1: the mean scores of the repetitions, whose
    runs are ``repetitions``); ``pretrain``: the stage-1 run of each DLSTM."""

    fusion: _run.RunResult
    pretrain: dict[str, _run.RunResult]
    repetitions: list[_run.RunResult] = field(default_factory=list)


def branch_state_from_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The DLSTM weights of a ``dlstm`` run's ``model.safetensors`` (keys of a :class:`DLSTM` state dict)."""
    prefix = "net.dlstm."
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    if not state:
        raise ConfigError(f"{path}: no DLSTM weights (expected a checkpoint of the `dlstm` preset)")
    return state


def stage_configs(cfg: RunConfig, pretrain_training: dict | None = None) -> tuple[dict[str, RunConfig], RunConfig]:
    """``({branch: stage-1 config}, stage-2 config)`` for a fusion preset config ``cfg``.

    Stage 1 uses the ``dlstm`` preset with the fusion config's DLSTM settings, ``cfg.training`` updated
    with ``pretrain_training`` (e.g. other epochs or learning rate); stage 2 is ``cfg`` with
    ``freeze_unimodal: true``.
    """
    fusion_cfg = model_config(cfg.model.name, cfg.model.params)
    if not isinstance(fusion_cfg, DLSTMFusionConfig):
        raise ConfigError(f"pretrain_then_fuse needs a DLSTM fusion preset (dlstm_att, dlstm_olb, dlstm_hlb, "
                          f"dlstm_early_late), got {cfg.model.name!r}")
    # the DLSTM settings the user set (the rest are the same defaults in both presets; num_outputs left
    # unset follows training.targets in run.build_model)
    shared = {k: getattr(fusion_cfg, k) for k in fusion_cfg.model_fields_set if k in DLSTMBranchConfig.model_fields}
    branches = ["audio", "video"] + (["joint"] if fusion_cfg.early_late else [])
    stage1 = {}
    for b in branches:
        raw = cfg.model_dump(mode="json")
        raw["model"] = {"name": "dlstm", "params": {**shared, "modality": b}}
        stage1[b] = make_config(raw, {"training": pretrain_training or {}}, source=f"stage 1 ({b})")
    raw = cfg.model_dump(mode="json")
    raw["model"]["params"] = {**cfg.model.params, "freeze_unimodal": True}
    return stage1, make_config(raw, source="stage 2")


def pretrain_then_fuse(cfg: RunConfig, run_dir: str | Path, recordings=None, progress: bool = True,
                       pretrain_training: dict | None = None) -> RecipeResult:
    """Stage 1: :func:`~avaffect.training.run.train` each DLSTM of ``cfg.model`` alone into
    ``run_dir/pretrain/<branch>``; stage 2: train the fusion with those DLSTMs frozen into ``run_dir``."""
    run_dir = Path(run_dir)
    stage1, stage2 = stage_configs(cfg, pretrain_training)
    if recordings is None:
        recordings = cfg.load_recordings()
    pretrain, states = {}, {}
    for b, c in stage1.items():
        log.info("stage 1: pre-training the %s DLSTM", b)
        pretrain[b] = _run.train(c, run_dir / "pretrain" / b, recordings, progress)
        states[b] = branch_state_from_checkpoint(pretrain[b].checkpoint)
    log.info("stage 2: training the %s fusion on the frozen DLSTMs", cfg.model.name)
    n = cfg.protocol.repetitions

    def load_pretrained(model: nn.Module) -> None:
        _fusion_net(model).load_branches(states)

    if n == 1:
        return RecipeResult(_run.train(stage2, run_dir, recordings, progress, init=load_pretrained), pretrain)
    # DLSTM-ATT: N repetitions of stage 2 (seeds seed..seed+N-1) on the same pre-trained DLSTMs
    reps = [_run.train(make_config(stage2.model_dump(mode="json"),
                                   {"training": {"seed": stage2.training.seed + i}}, source=f"repetition {i}"),
                       run_dir / "repetitions" / f"rep{i}", recordings, progress, init=load_pretrained)
            for i in range(n)]
    rows = pd.DataFrame([{"fold": "repetitions", "seed": stage2.training.seed + i, **r.metrics}
                         for i, r in enumerate(reps)])
    summary = write_summary(run_dir / "repetitions", rows)
    overall = {k[: -len("_mean")]: float(v) for k, v in summary.iloc[-1].items() if str(k).endswith("_mean")}
    return RecipeResult(_run.RunResult(run_dir / "repetitions", overall, {}, reps[0].checkpoint), pretrain, reps)
