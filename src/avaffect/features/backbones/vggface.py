"""VGG-Face features of each face crop (``vggface_face``): DLSTM-ATT's visual embedding.

Lucas et al.: "Activations from the last convolutional layer of the VGGFace network is used to extract
frame-level video features". The network is VGG-16 (Parkhi et al., BMVC 2015) up to conv5_3 + ReLU; the paper
does not say how the ``512 x 14 x 14`` activations of a 224 x 224 face become one frame vector, so the default
takes their spatial mean (``[512]``; ``spatial=S`` keeps an ``S x S`` grid instead, region-major like the face
ResNets). Inputs are VGG-Face's own: 224 x 224 RGB on the 0-255 scale minus the training set's mean pixel
(``normalize="vggface"``, the default).

Weights: the user-supplied registry entry ``vggface_vgg16`` (see :mod:`avaffect.features.weights`) or any file
given as ``weights``, in either naming:

* torchvision's VGG-16 (``features.0`` ... ``features.28``; ``classifier.*`` ignored), or
* the VGG-Face conversions that name the layers as the original release does (``conv1_1`` ... ``conv5_3``;
  ``fc6`` ... ``fc8`` ignored).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from avaffect.features.backbones.resnet import IMAGE_NORMALIZATIONS, FaceResNet, ImageNormalization
from avaffect.features.extractors.base import Positive, register_extractor
from avaffect.features.faces.pipeline import face_field
from avaffect.features.weights import UserSupplied, WeightFile, register_weights

__all__ = ["VGGFaceFace", "VGGFACE_LAYER_NAMES"]

# conv<block>_<i> of the original release, in network order (the 13 convolutions of VGG-16)
VGGFACE_LAYER_NAMES = tuple(f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                            for i in range(1, n + 1))
_DAG_KEY = re.compile(r"^(conv\d_\d)\.(weight|bias)$")


# the file this network loads, declared here beside it
VGGFACE_VGG16 = register_weights(WeightFile(
    name="vggface_vgg16", filename="vggface_vgg16.pth",
    source=UserSupplied("the VGG-Face page of Oxford's Visual Geometry Group, "
                        "https://www.robots.ox.ac.uk/~vgg/software/vgg_face/ (the original Caffe / MatConvNet / Torch7 "
                        "files), or a PyTorch conversion of them; no PyTorch file is registered because none was "
                        "checked here"),
    license="the VGG-Face release's terms (Oxford VGG: non-commercial research use); check them for your use",
    used_by=("vggface_face",),
    description="VGG-Face (VGG-16 trained on 2.6k identities, Parkhi et al., BMVC 2015), the visual embedding "
    "network of DLSTM-ATT (Lucas et al.)",
    note="a PyTorch state dict in torchvision's vgg16 naming (features.0 ... features.28) or the release's own layer "
    "names (conv1_1 ... conv5_3, fc6-fc8 ignored); the Caffe / MatConvNet / Torch7 files of the release must be "
    "converted to such a state dict first. No checksum is recorded, so it is not checked."))

@register_extractor
class VGGFaceFace(FaceResNet):
    """VGG-16 (VGG-Face) conv5_3 features of each face crop; see the module docstring.

    Parameters as :class:`~avaffect.features.backbones.resnet.FaceResNet` (``crop_size``, ``input_size``,
    ``resize``, ``normalize``, ``spatial``, ``detector``, ``missing_face``); defaults 224 x 224 crops and
    VGG-Face's mean-pixel normalisation.
    """

    name = "vggface_face"
    version = "1"
    arch = "vgg16"
    fine_tunable = False  # no layer groups for end-to-end training (frozen features only)
    default_weights = VGGFACE_VGG16.name

    class Params(FaceResNet.Params):
        crop_size: int = face_field("crop_size", 224)
        input_size: int = Field(224, ge=32, description="side the network sees (px)")
        normalize: ImageNormalization = Field("vggface", description="pixel normalisation: " +
                                              ", ".join(IMAGE_NORMALIZATIONS))
        batch_size: Positive = Field(16, description="inputs per forward pass (does not change the features)")

    @property
    def channels(self) -> int:
        return 512

    def build_network(self):
        from avaffect.features.backbones.nets import VGG16Features  # lazy: nets imports torch

        return VGG16Features(spatial=int(self.params["spatial"]))

    def adapt_state_dict(self, state: dict[str, Any], net) -> dict[str, Any]:
        from avaffect.features.backbones.nets import VGG16_CONV_INDICES  # lazy: nets imports torch

        if any(_DAG_KEY.match(k) for k in state):  # the original release's layer names
            index = dict(zip(VGGFACE_LAYER_NAMES, VGG16_CONV_INDICES, strict=True))
            out = {}
            for key, value in state.items():
                m = _DAG_KEY.match(key)
                if m:
                    out[f"features.{index[m.group(1)]}.{m.group(2)}"] = value
                elif not re.match(r"^fc\d\.", key):
                    out[key] = value  # anything else is reported as unexpected by load_weights
            return out
        return {k: v for k, v in state.items() if not k.startswith("classifier.")}

    def describe_weights_format(self) -> str:
        return ("torchvision's vgg16 naming (features.0 ... features.28; classifier ignored) or VGG-Face's "
                "(conv1_1 ... conv5_3; fc6-fc8 ignored)")
