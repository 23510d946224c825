"""Neural and third-party feature extractors (registered on import).

=================  =======  ==========================================================  ===========
name               modality  what                                                        dim
=================  =======  ==========================================================  ===========
vggish             audio    VGGish log-mel patches (0.96 s) → VGGish network            128
spec_resnet18      audio    64-mel spectrogram at 44.1 kHz (~1.07 s per step) →         512
                            ResNet-18 with a 1-channel first conv (RJA)
resnet18_face      video    torchvision ResNet-18 per face crop (ImageNet norm)         512 (or 49·512 with spatial=7)
resnet50_face      video    torchvision ResNet-50 per face crop (ABAW 48 → 40 crops)    2048 (or 49·2048)
vggface_face       video    VGG-16 (VGG-Face) conv5_3 per 224 x 224 crop, mean-pooled   512 (or 49·512)
                            (DLSTM-ATT; user-supplied weights)
r2plus1d18_clip    video    torchvision R(2+1)D-18 on 8-frame face clips (RJA)           512
egemaps            audio    openSMILE eGeMAPS LLDs, 100 Hz → timeline (optional extra)  25 (eGeMAPSv02)
face_onnx          video    an ONNX face model per crop (EmotiEffLib layout): embedding  the model's
                            or its valence/arousal (optional onnxruntime; user weights)
face_landmarks     video    MediaPipe Face Mesh per crop → expression geometry (mouth,   13 (+936 with
                            eyes, brows, head pose proxies; optional avaffect[faces])    coords)
face_fer7          video    fer's 7-emotion classifier per grey 64 x 64 crop: class      135 (7 / 128)
                            probabilities + penultimate embedding (avaffect[faces])
=================  =======  ==========================================================  ===========

Weights are never downloaded: see :mod:`avaffect.features.weights` for the registry of public
files, the cache folder (``$AVAFFECT_HOME/weights``) and ``weights=PATH``. Importing this package
does not import torch; the networks are built on the first ``extract``.
"""

from avaffect.features.backbones.base import TorchExtractor, resolve_device
from avaffect.features.backbones.egemaps import EGeMAPS
from avaffect.features.backbones.face_landmarks import FaceLandmarks
from avaffect.features.backbones.fer7 import FaceFer7
from avaffect.features.backbones.onnx_face import FaceOnnx
from avaffect.features.backbones.resnet import FaceResNet, ResNet18Face, ResNet50Face, SpecResNet18
from avaffect.features.backbones.vggface import VGGFaceFace
from avaffect.features.backbones.vggish import VGGISH_PARAMETER_NAMES, VGGish, VGGishExtractor
from avaffect.features.backbones.video import R2Plus1D18Clip

__all__ = [
    "TorchExtractor",
    "resolve_device",
    "VGGish",
    "VGGishExtractor",
    "VGGISH_PARAMETER_NAMES",
    "SpecResNet18",
    "FaceResNet",
    "ResNet18Face",
    "ResNet50Face",
    "VGGFaceFace",
    "R2Plus1D18Clip",
    "EGeMAPS",
    "FaceOnnx",
    "FaceLandmarks",
    "FaceFer7",
]
