"""Face detectors behind one interface, and their registry.

Every detector maps an RGB frame (``uint8 [H, W, 3]``) to a list of :class:`Detection`:
a box ``(x1, y1, x2, y2)`` in frame pixels, a score (higher = surer; its scale depends on the
detector) and optional landmarks ``[5, 2]`` in the usual 5-point order, image-left first:

    0: eye on the image's left (the subject's right eye)   1: eye on the image's right
    2: nose tip   3: mouth corner on the image's left   4: mouth corner on the image's right

A landmark a detector does not estimate is NaN. Alignment only needs rows 0 and 1 (the eyes).

=============== ========================================= ============================================
name            needs                                     landmarks
=============== ========================================= ============================================
``haar``        nothing (OpenCV 4.x wheels ship the        eye centres from OpenCV's eye cascade run
(default)       cascades in ``cv2.data.haarcascades``)     in the upper face, when it finds one eye in
                                                           each half of the face; nose/mouth NaN
``dlib``        ``pip install 'avaffect[dlib]'``           eye centres (mean of each eye's two corners)
                (``dlib-bin``, ``face-recognition-models``) and the nose point of dlib's 5-point
                                                           model; mouth NaN
``yunet``       an ONNX file from OpenCV Zoo               all 5
                (``face_detection_yunet_2023mar.onnx``)
``retinaface``  a RetinaFace ONNX export (see              all 5
                :class:`RetinaFaceDetector`)
``mediapipe``   ``pip install 'avaffect[faces]'`` and the    eyes and nose (BlazeFace's 6 keypoints; it
                BlazeFace file from MediaPipe's wheel         gives the mouth centre, not its corners)
                (``avaffect weights import``)
``precomputed`` nothing: the frame *is* a face crop        none (the box is the whole image)
                (Aff-Wild2 ``cropped_aligned``)
``auto``        whichever of ``mediapipe`` (short range,    those of the detector it resolves to
                full range where that finds no face, its
                box drawn like Haar's), ``haar`` this
                install has, in that order
=============== ========================================= ============================================

``auto`` (:mod:`~avaffect.features.faces.detectors.auto`) is the fastest accurate detector this install has: a
config or a checkpoint that names it runs MediaPipe where ``avaffect[faces]`` and its model file are installed, Haar
elsewhere, its box drawn like Haar's (docs/benchmarks/face_auto.md). What ran is named in the outputs and in the
feature ids.

Weight files are never downloaded: pass ``weights=PATH`` or put the file in
``$AVAFFECT_HOME/weights/`` (``AVAFFECT_HOME`` defaults to ``~/.cache/avaffect``); a missing file
raises :class:`~avaffect.errors.AvaffectError` saying what to download and where to put it.

A new backend goes in its own module here (``detectors/<name>.py``): subclass
:class:`FaceDetector` (set ``name``, ``defaults``, implement ``detect``), decorate it with
:func:`register_detector`, and import the module below so that importing this package registers
it. Detectors are picklable: OpenCV/dlib objects are built lazily and dropped when pickled.
"""

from avaffect.features.faces.detectors.auto import (
    AUTO,
    AUTO_MEDIAPIPE,
    AUTO_ORDER,
    AutoDetector,
    auto_identities,
    detector_identity,
    resolve_detector,
)
from avaffect.features.faces.detectors.base import (
    Detection,
    FaceDetector,
    get_detector,
    landmarks_from,
    list_detectors,
    register_detector,
)
from avaffect.features.faces.detectors.dlib import DLIB_INSTALL, DlibDetector
from avaffect.features.faces.detectors.haar import HaarDetector
from avaffect.features.faces.detectors.mediapipe import MediaPipeDetector
from avaffect.features.faces.detectors.precomputed import PrecomputedDetector
from avaffect.features.faces.detectors.retinaface import (
    RETINAFACE_FILE,
    RETINAFACE_SOURCE,
    RetinaFaceDetector,
    decode_retinaface,
    retinaface_priors,
)
from avaffect.features.faces.detectors.yunet import YUNET_FILE, YUNET_SOURCE, YuNetDetector

__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "AUTO_MEDIAPIPE",
    "AutoDetector",
    "auto_identities",
    "detector_identity",
    "resolve_detector",
    "Detection",
    "FaceDetector",
    "HaarDetector",
    "DlibDetector",
    "YuNetDetector",
    "RetinaFaceDetector",
    "MediaPipeDetector",
    "PrecomputedDetector",
    "register_detector",
    "get_detector",
    "list_detectors",
    "retinaface_priors",
    "decode_retinaface",
    "DLIB_INSTALL",
    "YUNET_FILE",
    "RETINAFACE_FILE",
    "landmarks_from",
    "YUNET_SOURCE",
    "RETINAFACE_SOURCE",
]
