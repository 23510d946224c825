"""Typed run configuration (YAML ↔ pydantic). Every size and path comes from here, nothing is hard-coded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from avaffect.data.datasets import DATASET_NAMES, load_dataset
from avaffect.data.layout import SPLITS
from avaffect.data.recording import TARGETS, Recording
from avaffect.errors import AvaffectError, ConfigError
from avaffect.features.e2e_inputs import check_end_to_end_extractors
from avaffect.features.extractors.base import ExtractorSpec, build_extractor, extractor_params, needs_weights
from avaffect.features.run_features import FeaturePipeline
from avaffect.features.store import FeatureStore
from avaffect.models.e2e import backbone_group_names
from avaffect.models.registry import get_entry, model_config
from avaffect.shipped import resolve_config_path

DatasetName = Literal[DATASET_NAMES]  # the dataset table (avaffect.data.datasets) is the one list
TargetName = Literal[TARGETS]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    dataset: DatasetName = "synthetic"
    root: Path | None = None
    length_tolerance: int = Field(0, ge=0, description="annotation rows may differ from video frames by this")
    train_split: str = SPLITS[0]
    val_split: str = SPLITS[1]


OFFLINE_EXTRACTORS = {"audio": ExtractorSpec(name="logmel_stats"), "video": ExtractorSpec(name="face_hog")}


class FeaturesConfig(_Strict):
    store: Path | None = Field(None, description="feature store folder; default <data root>/features")
    audio: ExtractorSpec = OFFLINE_EXTRACTORS["audio"]
    video: ExtractorSpec = OFFLINE_EXTRACTORS["video"]
    workers: int = Field(1, ge=1)


class ModelSpec(_Strict):
    """A preset name and its parameters, checked against the preset's typed config as soon as it is read
    (a typo fails here, not after hours of feature extraction)."""

    name: str = "rjca"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_params(self) -> ModelSpec:
        try:
            model_config(self.name, self.params)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self


class WarmupConfig(_Strict):
    """Learning-rate warm-up (a factor on ``training.lr``, per optimisation step).

    ``linear``: from ``start_factor`` to 1 over the first ``epochs`` epochs, then 1. ``repetitive``: the same ramp
    restarted at the start of each of the first ``epochs`` epochs (ABAW6's "repetitive warm-up until epoch 5",
    our reading of it). ``none``: no warm-up."""

    kind: Literal["none", "linear", "repetitive"] = "none"
    epochs: int = Field(0, ge=0, description="warm-up length in epochs")
    start_factor: float = Field(0.1, gt=0, le=1, description="LR factor at the first step of a ramp")

    @model_validator(mode="after")
    def _length(self) -> WarmupConfig:
        if self.kind != "none" and self.epochs < 1:
            raise ValueError(f"warmup.kind={self.kind} needs warmup.epochs >= 1")
        return self


class ModalityDropout(_Strict):
    """Modality dropout (ModDrop, Neverova et al., TPAMI 2016) — not in the four papers, off by default.

    During training each window loses its **voice** with probability ``voice`` (the audio features replaced by their
    training mean: the input a video without an audio track gets at prediction) or its **face** with probability
    ``face`` (the face mask off: the input of a window where no face was found), never both. The model then learns
    that those inputs carry no information, which is what ``predict --explain``'s occlusion assumes: a modality's
    contribution then reads "what this modality added", and falls where the modality is silent or noise
    (docs/benchmarks/explain.md)."""

    voice: float = Field(0.0, ge=0, le=1, description="probability that a training window's voice is dropped")
    face: float = Field(0.0, ge=0, le=1, description="probability that a training window's face is dropped")

    @model_validator(mode="after")
    def _one_at_most(self) -> ModalityDropout:
        if self.voice + self.face > 1:
            raise ValueError(f"modality_dropout: voice + face must be at most 1 (one modality dropped per window), "
                             f"got {self.voice} + {self.face}")
        return self

    @property
    def enabled(self) -> bool:
        return self.voice > 0 or self.face > 0


class TrainingConfig(_Strict):
    window: int = Field(300, ge=1, description="L, steps per window")
    hop: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    max_epochs: int = Field(30, ge=1)
    min_epochs: int = Field(1, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="sgd: with momentum 0.9")
    lr: float = Field(1e-3, gt=0)
    lr_min: float = Field(0.0, ge=0, description="ReduceLROnPlateau never goes below this LR")
    weight_decay: float = Field(1e-5, ge=0)
    warmup: WarmupConfig = WarmupConfig()
    reload_best: bool = Field(False, description="at the end of an epoch whose validation score is worse than "
                              "the best so far, reload the best weights (ABAW8)")
    patience: int = Field(8, ge=1, description="early stopping patience (epochs) on validation P_VA")
    lr_patience: int = Field(3, ge=1, description="ReduceLROnPlateau patience on validation P_VA")
    lr_factor: float = Field(0.5, gt=0, lt=1)
    loss: Literal["ccc", "mse", "ccc+mse"] = Field(
        "ccc", description="ccc: 1 - CCC; mse: mean squared error on annotated steps; ccc+mse: their sum with "
        "mse_weight on the MSE")
    mse_weight: float = Field(1.0, ge=0)
    modality_dropout: ModalityDropout = ModalityDropout()
    loss_reduction: Literal["batch", "window"] = "batch"
    gradient_clip: float | None = 1.0
    seed: int = 0
    precision: str = "32-true"
    accelerator: str = "auto"
    cpu_threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="torch threads when training on the CPU: auto = half the usable cores (1 on a 2-core "
        "machine; docs/benchmarks/threads.md), or OMP_NUM_THREADS when set; an integer >= 1 fixes it")
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1, description="machines taking part in DDP training: Lightning requires devices "
                           "x num_nodes = the world size (under torchrun: --nnodes x --nproc_per_node)")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp (several GPUs, or under torchrun), "
                          "ddp_spawn ...")
    num_workers: int = Field(0, ge=0)
    checkpoint_every_n_steps: int | None = Field(
        None, ge=1, description="also write checkpoints/last.ckpt every N optimisation steps, so that a killed run "
        "resumes mid-epoch at the next batch (one process; long epochs). None: at the end of each epoch")
    targets: list[TargetName] = Field(
        default_factory=lambda: list(TARGETS),
        description="targets the model predicts; one target = one model per target (ABAW8)")
    export_onnx: bool = Field(True, description="also write model.onnx beside model.safetensors (checked against "
                              "the torch model), so that predict runs without importing torch (avaffect export)")
    monitor: Literal["auto", "p_va", "ccc_valence", "ccc_arousal"] = Field(
        "auto", description="validation score for early stopping and best model; auto = P_VA, or the CCC of "
        "the single target")

    def monitor_key(self) -> str:
        if self.monitor != "auto":
            return self.monitor
        return "p_va" if len(self.targets) > 1 else f"ccc_{self.targets[0]}"


class BackboneTuning(_Strict):
    """How end-to-end training fine-tunes one backbone (the extractor of ``features.video`` / ``features.audio``).
    Layer groups — ResNet: ``stem``, ``layer1`` … ``layer4``; VGGish: ``block1`` … ``block4``, ``embeddings``."""

    unfreeze: dict[str, int] = Field(
        default_factory=dict, description="layer group -> the epoch (0-based) it starts training; groups not "
        "named stay frozen (an empty mapping: the whole backbone frozen)")
    lr_scale: dict[str, float] = Field(
        default_factory=dict, description="layer group -> factor on training.lr for its parameters (default 1)")
    chunk: int = Field(0, ge=0, description="steps per backbone forward pass (0 = the whole batch at once; "
                       "smaller bounds the activation memory)")

    @model_validator(mode="after")
    def _positive(self) -> BackboneTuning:
        bad = [k for k, v in self.unfreeze.items() if v < 0] + [k for k, v in self.lr_scale.items() if v <= 0]
        if bad:
            raise ValueError(f"unfreeze epochs must be >= 0 and lr_scale factors > 0 (see {', '.join(bad)})")
        return self


class AugmentConfig(_Strict):
    """Training-time augmentation of the face crops (validation and prediction take the centre crop)."""

    random_crop: bool = Field(True, description="a random input_size square of the crop_size crop (ABAW: 40 of "
                              "48); needs the video extractor's resize: center_crop")
    hflip: bool = Field(True, description="horizontal flip with probability 0.5")
    per: Literal["frame", "window"] = Field(
        "frame", description="frame: a new draw for every crop (torchvision transforms applied per image, our "
        "reading of ABAW8's 'for training images'); window: one draw per window (temporally consistent)")


class EndToEndConfig(_Strict):
    """Fine-tune the backbones jointly with the fusion model from face crops and spectrogram segments
    (:mod:`avaffect.training.e2e`) instead of training on cached features."""

    enabled: bool = False
    cache: Path | None = Field(None, description="packed inputs folder (crops, spectrograms); default "
                               "<feature store>/inputs")
    video: BackboneTuning = BackboneTuning()
    audio: BackboneTuning = BackboneTuning()
    augment: AugmentConfig = AugmentConfig()
    release: Literal["epochs", "plateau"] = Field(
        "epochs", description="how the unfreeze numbers count: epochs = the epoch a group starts training; plateau "
        "= stages 0, 1, 2 ...: the next stage starts when the validation score has not improved for "
        "release_patience epochs, and restarts the learning rate (training.lr, the warm-up, the plateau scheduler) "
        "— ABAW8's 'the process is repeated until all the layers are finetuned'")
    release_patience: int = Field(5, ge=1, description="release: plateau — epochs without a better validation score "
                                  "before the next stage (must be below training.patience)")
    channels_last: bool = Field(False, description="channels-last memory format for the backbones (faster "
                                "convolutions on recent GPUs, with AMP)")
    compile: bool = Field(False, description="torch.compile the backbones (needs a C++ compiler on the CPU)")


class EvaluationConfig(_Strict):
    protocol: Literal["global", "per_recording"] = "global"


class ProtocolConfig(_Strict):
    """How runs are organised: k-fold cross-validation, seeds, the per-run training recipe
    (``avaffect train --folds/--seeds``; see :mod:`avaffect.training.protocols`)."""

    num_folds: int = Field(6, ge=1, description="k: fold 0 = the official split, folds 1..k-1 re-partition "
                           "train+validation (ABAW8: 6); 1 = the official split only")
    fold_seed: int = Field(0, description="seed of the fold partition (deterministic)")
    subject_independent: bool = Field(True, description="keep every subject (Recording.subject) in one "
                                      "validation part; recordings without a subject are their own group")
    fold: int | None = Field(None, ge=0, description="set by `train --folds` in each run's config: the fold it "
                             "trained on (its exact split is RUN/split.json)")
    test_selection: Literal["average", "best_k"] = Field(
        "average", description="fold ensemble on the test split: average every fold model, or only the best_k "
        "by validation score (ABAW6: the best folds)")
    best_k: int = Field(3, ge=1, description="with test_selection = best_k: how many fold models")
    repetitions: int = Field(1, ge=1, description="pretrain_then_fuse: train the fusion N times (seeds seed, "
                             "seed+1, ...) on the same pre-trained DLSTMs (DLSTM-ATT: 10 repetitions)")
    recipe: Literal["single", "pretrain_then_fuse"] = Field(
        "single", description="single = one training run; pretrain_then_fuse = DLSTM-ATT: pre-train the "
        "unimodal DLSTMs, freeze them, train the fusion (avaffect.training.recipes)")


class PostprocessConfig(_Strict):
    """Post-processing of full-recording predictions, every step fitted on the validation split only
    (:mod:`avaffect.evaluation.postprocess`). Order: delay shift → smoothing → bias/scale → clip."""

    enabled: bool = Field(False, description="apply in `avaffect evaluate` without --postprocess")
    clip: bool = Field(True, description="clip the outputs to [-1, 1]")
    delay: bool = Field(True, description="fit a label-delay shift per target (predictions delayed d frames)")
    min_delay: int = Field(0, description="smallest shift tried (frames; negative = advance predictions)")
    max_delay: int = Field(50, ge=0, description="largest shift tried (frames)")
    smoothing: bool = Field(True, description="fit a centred moving-average window per target")
    windows: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 30, 50, 75, 100],
                               description="smoothing windows tried (frames; 1 = none). RJA code: 20 V / 50 A")
    scale: Literal["auto", "always", "never"] = Field(
        "auto", description="AVEC bias/scale correction (match the validation label mean/std): auto = keep it "
        "only where it raises the validation CCC")


class PaperRow(_Strict):
    """Which result-table row a config reproduces, and where each of its settings comes from.

    ``settings`` maps a dotted config key (``training.lr``) to the paper's words that state its value (a short
    quote); ``unstated`` lists what the paper leaves open and the choice this config makes. Training ignores
    this section; ``avaffect config show`` prints it and the suite checks it is complete."""

    paper: str = Field(description="file name under ../shared/papers/")
    table: str = Field(description="e.g. 'Table 2'")
    row: str = Field(description="the row label as printed")
    reported: dict[str, float | None] = Field(default_factory=dict,
                                              description="metric -> value as printed (None: not reported)")
    settings: dict[str, str] = Field(default_factory=dict, description="config key -> the quote stating it")
    unstated: list[str] = Field(default_factory=list, description="what the paper does not state: our choice")
    notes: list[str] = Field(default_factory=list, description="inconsistencies, deviations, caveats")


class RunConfig(_Strict):
    paper: PaperRow | None = None
    data: DataConfig = DataConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelSpec = ModelSpec()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    end_to_end: EndToEndConfig = EndToEndConfig()

    @model_validator(mode="after")
    def _model_fits_training(self) -> RunConfig:
        self.model_params()  # raises on a mismatch
        if self.end_to_end.enabled:
            if self.training.modality_dropout.enabled:  # e2e windows carry crops and spectrogram segments
                raise ValueError("training.modality_dropout applies to training on cached features; end-to-end "
                                 "training does not drop modalities yet — set it to 0 or disable end_to_end")
            self._check_end_to_end()
        return self

    def _check_end_to_end(self) -> None:
        """Backbones that can be fine-tuned, and layer-group names they have — before any work."""
        try:
            video, audio = build_extractor(self.features.video), build_extractor(self.features.audio)
            check_end_to_end_extractors(video, audio)
        except AvaffectError as e:
            raise ValueError(f"end_to_end: {e}") from None
        for modality, ex in (("video", video), ("audio", audio)):
            tuning = getattr(self.end_to_end, modality)
            names = backbone_group_names(ex.name)
            unknown = sorted((set(tuning.unfreeze) | set(tuning.lr_scale)) - set(names))
            if unknown:
                raise ValueError(f"end_to_end.{modality}: unknown layer group(s) {', '.join(unknown)}; "
                                 f"{ex.name} has {', '.join(names)}")
        if self.end_to_end.release == "plateau" and self.end_to_end.release_patience >= self.training.patience:
            raise ValueError(f"end_to_end.release_patience ({self.end_to_end.release_patience}) must be below "
                             f"training.patience ({self.training.patience}): early stopping would end the run before "
                             "the next layer group is released")
        if video.params.get("clip_every", 1) != 1:
            raise ValueError(f"features.video.params.clip_every: end-to-end training runs every step's own clip, so "
                             f"the exported {video.name} would not be what was trained; set clip_every: 1")
        if hasattr(video, "clip_plan") and self.end_to_end.augment.per != "window":
            raise ValueError(f"end_to_end.augment.per: {video.name} takes clips of crops, and a clip needs one "
                             "augmentation draw for all its frames: set per: window")
        if self.end_to_end.augment.random_crop and video.params.get("resize") != "center_crop":
            raise ValueError("end_to_end.augment.random_crop needs features.video.params.resize: center_crop "
                             "(a random input_size square of the crop_size crop); or set random_crop: false")

    def model_params(self) -> dict[str, Any]:
        """``model.params`` with the sizes the training section fixes: ``num_outputs`` = the number of targets
        and, for presets with time-major weights, ``window_length`` = ``training.window``. Given values must
        agree with them."""
        params = dict(self.model.params)
        targets = self.training.targets
        given = params.setdefault("num_outputs", len(targets))
        if given != len(targets):
            raise ValueError(f"model.params.num_outputs={given} but training.targets={targets}")
        if "window_length" in get_entry(self.model.name).config_cls.model_fields:
            given = params.setdefault("window_length", self.training.window)
            if given != self.training.window:
                raise ValueError(f"model.params.window_length={given} but training.window={self.training.window}: "
                                 "the time-major weights need the window length")
        return params

    def weight_free(self) -> RunConfig:
        """This config with every extractor that needs downloaded weights replaced by the offline default of its
        modality (``logmel_stats`` audio, ``face_hog`` video); the rest unchanged. End-to-end configs keep their
        backbones, randomly initialised (``allow_random``), since they are trained anyway."""
        if self.end_to_end.enabled:  # the backbones are trained here: random init instead of downloaded weights
            features = self.features.model_copy(update={
                m: getattr(self.features, m).model_copy(update={"params": {
                    **getattr(self.features, m).params, "weights": None, "allow_random": True}})
                for m in ("audio", "video")})
            return self.model_copy(update={"features": features})
        features = self.features.model_copy(update={
            m: (OFFLINE_EXTRACTORS[m] if needs_weights(getattr(self.features, m).name) else getattr(self.features, m))
            for m in ("audio", "video")})
        return self.model_copy(update={"features": features})

    def feature_pipeline(self) -> FeaturePipeline:
        """The run's extractors over its feature store."""
        return FeaturePipeline.from_specs(self.features.audio, self.features.video, self.store_path(),
                                          self.features.workers)

    def load_recordings(self, splits: tuple[str, ...] = SPLITS) -> list[Recording]:
        """The recordings of ``data`` (of ``splits``) as every command reads them; a recording whose media are not
        here takes its timeline from the feature store's timeline index (training from a store and the annotations
        alone)."""
        return load_dataset(self.data.dataset, self.data.root, self.data.length_tolerance, splits=splits,
                            timelines=FeatureStore(self.store_path()).timelines)

    def store_path(self) -> Path:
        if self.features.store is not None:
            return Path(self.features.store)
        if self.data.root is None:
            raise ConfigError("set data.root or features.store")
        return Path(self.data.root) / "features"


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config (a path, or a shipped paper config's name); ``overrides`` are merged on top."""
    path = resolve_config_path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config ({e})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, model:, training: ...), "
                          f"found a {type(raw).__name__}")
    cfg = make_config(raw, None, source=str(path))  # the file alone: its own errors name the file
    if not overrides:
        return cfg
    return make_config(raw, overrides, source=f"the command-line options (over {path})")


def make_config(raw: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
                source: str = "config") -> RunConfig:
    merged = _merge(dict(raw or {}), overrides or {})
    try:
        return RunConfig(**merged)
    except ValidationError as e:
        raise ConfigError(f"{source}: invalid configuration:\n{e}{allowed_keys_hint(e, RunConfig)}") from None


def allowed_keys_hint(error: ValidationError, model: type[BaseModel]) -> str:
    """For each unknown key of a validation error, the keys that are allowed where it stands."""
    hints = []
    for err in error.errors():
        if err.get("type") != "extra_forbidden":
            continue
        node: Any = model
        for part in err["loc"][:-1]:
            field = node.model_fields.get(part) if isinstance(node, type) and issubclass(node, BaseModel) else None
            node = field.annotation if field is not None else None
        if isinstance(node, type) and issubclass(node, BaseModel):
            where = ".".join(map(str, err["loc"][:-1])) or "the top level"
            hints.append(f"{err['loc'][-1]!r} is not a key of {where}; allowed: {', '.join(node.model_fields)}")
    return ("\n" + "\n".join(hints)) if hints else ""


def _merge(base: dict, extra: dict) -> dict:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = _merge(dict(base[k]), v)
        else:
            base[k] = v
    return base


def dump_config(cfg: RunConfig) -> str:
    """The config as YAML, every default filled in — the extractors' parameters too."""
    raw = cfg.model_dump(mode="json")
    for modality in ("audio", "video"):
        spec = getattr(cfg.features, modality)
        raw["features"][modality]["params"] = extractor_params(spec.name, spec.params).model_dump(mode="json")
    return yaml.safe_dump(raw, sort_keys=False)
