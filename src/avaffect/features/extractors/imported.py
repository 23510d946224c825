"""Features computed outside avaffect and put into a feature store (``imported_audio`` / ``imported_video``).

A run names them as any extractor (``features.video: {name: imported_video, params: {dim: 2048, tag: my-resnet}}``);
their store folder is ``imported_video-<hash of dim, tag>``. Write each recording's ``[T, dim]`` float32 array with
:meth:`avaffect.features.store.FeatureStore.save` (the recording's timeline, ``rec.times``, fixes ``T``; all-zero
visual rows mark steps without a face). avaffect never computes them: :meth:`extract` names what is missing. The
scale benchmark (``benchmarks/scale.py``) builds its Aff-Wild2-sized stores this way.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from avaffect.data.recording import Recording
from avaffect.errors import DataError
from avaffect.features.extractors.base import Extractor, ExtractorParams, Positive, register_extractor

__all__ = ["ImportedAudio", "ImportedVideo"]


class _Imported(Extractor):
    version = "1"

    class Params(ExtractorParams):
        dim: Positive = Field(description="the features' size (required: the store's files are not read to guess it)")
        tag: str = Field("", description="where the features come from (free text, part of the feature id)")

    @property
    def dim(self) -> int:
        return int(self.params["dim"])

    def extract(self, rec: Recording) -> np.ndarray:
        raise DataError(None, f"recording {rec.name} has no {self.name} features ({self.id}, tag "
                        f"{self.params['tag']!r}) in the store, and avaffect cannot compute imported features",
                        "write them into the store with FeatureStore.save (avaffect.features.store) before training")


@register_extractor
class ImportedAudio(_Imported):
    name = "imported_audio"
    modality = "audio"


@register_extractor
class ImportedVideo(_Imported):
    name = "imported_video"
    modality = "video"
