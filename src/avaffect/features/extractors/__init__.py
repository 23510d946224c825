"""Feature extractors: named, configurable, versioned per-recording feature functions.

Two offline defaults need no downloaded weights: ``face_hog`` (video, :mod:`.face_hog`) and
``logmel_stats`` (audio, :mod:`.logmel`). The neural extractors (``vggish``, ``spec_resnet18``,
``resnet18_face``, ``resnet50_face``, ``r2plus1d18_clip``) and openSMILE's ``egemaps`` live in
:mod:`avaffect.features.backbones`, which :mod:`avaffect.features` imports, so that importing any part
of ``avaffect.features`` registers every extractor. The base class and registry: :mod:`.base`.
"""

from avaffect.features.extractors.base import (
    EXTRACTORS,
    Extractor,
    ExtractorParams,
    ExtractorSpec,
    audio_source,
    build_extractor,
    extractor_params,
    extractor_params_table,
    get_extractor,
    list_extractors,
    needs_weights,
    register_extractor,
)
from avaffect.features.extractors.face_hog import FaceHOG
from avaffect.features.extractors.imported import ImportedAudio, ImportedVideo
from avaffect.features.extractors.logmel import LogMelStats

__all__ = ["EXTRACTORS", "Extractor", "ExtractorParams", "ExtractorSpec", "FaceHOG", "ImportedAudio", "ImportedVideo",
           "LogMelStats", "audio_source", "build_extractor", "extractor_params", "extractor_params_table",
           "get_extractor", "list_extractors", "needs_weights", "register_extractor"]
