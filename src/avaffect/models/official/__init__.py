"""Reference-compatible re-implementations of the authors' released fusion modules (docs/design.md §4.6, §9).

These modules reproduce the *released code*, not the papers, so that the authors' checkpoints load with
``load_state_dict(strict=True)`` under their own parameter names and give the same outputs. Variants:

=====================  ==========================================================================
``rja_icassp23``       RJA (recurrent joint attention): U-BLSTMs, audio-guided spatial attention,
                       recursive JCA, J-BLSTM, two regression heads.
``dca_icme24``         DCA (dynamic cross-attention): RJA plus a 2-way gate per modality.
``jca_tbiom23``        JCA: spatial attention on the normalised audio, co-attention, J-BLSTM, heads
                       (no U-BLSTMs).
``rjcma_dcn3_block``   The 3-modality recursive co-attention block of RJCMA: ``block(x1, x2, x3)``.
=====================  ==========================================================================

Entry points: :func:`from_official` (state dict → module in eval mode, sizes inferred from the tensors),
:func:`build_official` (fresh, randomly initialised module from explicit sizes), :func:`infer_sizes`,
:func:`convert_official` (authors' checkpoint file → ``model.safetensors``) and :func:`load_converted`.

Layout: :mod:`~avaffect.models.official.modules` (the modules, with the released code's deviations from the
papers) and :mod:`~avaffect.models.official.convert` (variant registry, size inference, loading, conversion).
"""

from avaffect.models.official.convert import (
    FORMAT,
    VARIANTS,
    build_official,
    convert_official,
    from_official,
    get_variant,
    guess_variant,
    infer_sizes,
    list_variants,
    load_converted,
    load_official_checkpoint,
    register_variant,
)
from avaffect.models.official.deploy import OfficialRegressor, official_preprocessing
from avaffect.models.official.modules import (
    GATE_TEMPERATURE,
    CAMSizes,
    DCNLayer,
    DCNSizes,
    DCNStack,
    DenseCoAttention,
    OfficialBLSTM,
    OfficialCAM,
    SpatialAttention,
    VideoAttention,
)

__all__ = [
    "FORMAT",
    "GATE_TEMPERATURE",
    "VARIANTS",
    "CAMSizes",
    "DCNSizes",
    "OfficialBLSTM",
    "SpatialAttention",
    "VideoAttention",
    "DenseCoAttention",
    "DCNLayer",
    "DCNStack",
    "OfficialCAM",
    "register_variant",
    "get_variant",
    "list_variants",
    "build_official",
    "infer_sizes",
    "guess_variant",
    "from_official",
    "convert_official",
    "load_converted",
    "load_official_checkpoint",
    "OfficialRegressor",
    "official_preprocessing",
]
