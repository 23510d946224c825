"""Audio front-ends, feature extractors, the feature store and batch extraction (decoding: :mod:`avaffect.media`).

Quick use::

    from avaffect.features import FeatureStore, extract_features, get_extractor

    extractors = [get_extractor("face_hog"), get_extractor("logmel_stats", context="causal")]
    summary = extract_features(recordings, extractors, FeatureStore("features"), workers=2)
    print(summary.format())
    X = FeatureStore("features").load(extractors[0].id, recordings[0].name)  # [T, d] memmap
"""

from avaffect.features import backbones  # noqa: F401  (registers the neural extractors; torch loads lazily)
from avaffect.features.audio import log_mel_spectrogram, mel_filterbank
from avaffect.features.extractors import (
    Extractor,
    FaceHOG,
    LogMelStats,
    get_extractor,
    list_extractors,
    register_extractor,
)
from avaffect.features.run_features import FeaturePipeline, RecordingFeatures
from avaffect.features.store import FeatureStore
from avaffect.features.store_extraction import ExtractionSummary, extract_features, select_shard
from avaffect.features.temporal_align import CONTEXTS, align_to_timeline

__all__ = [
    "CONTEXTS",
    "align_to_timeline",
    "log_mel_spectrogram",
    "mel_filterbank",
    "ExtractionSummary",
    "extract_features",
    "select_shard",
    "Extractor",
    "FaceHOG",
    "LogMelStats",
    "get_extractor",
    "list_extractors",
    "register_extractor",
    "FeaturePipeline",
    "FeatureStore",
    "RecordingFeatures",
]
