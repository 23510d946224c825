"""Faces: pluggable detectors, single-face tracking, eye-levelling alignment and square crops.

Quick use::

    from avaffect.features.faces import load_face_crops, track_faces

    crops, face_mask, boxes = load_face_crops(rec, size=112)            # on rec.times
    track = track_faces("clip.mp4", detector="haar", size=224)           # on the video's frames
    track = track_faces("clip.mp4", detector="yunet", weights="face_detection_yunet_2023mar.onnx")

Detectors (:func:`list_detectors`): ``haar`` (default, offline, from the OpenCV wheel), ``dlib``
(``pip install 'avaffect[dlib]'``), ``yunet`` and ``retinaface`` (user-supplied ONNX weights),
``precomputed`` (Aff-Wild2 ``cropped_aligned`` crops). Frames without a face get a zero crop and
``face_mask`` False; they are never dropped.
"""

from avaffect.features.faces.align import STANDARD_SIZES, align_crop, crop_matrix, eye_angle
from avaffect.features.faces.crops import (
    CROP_PARAMS,
    FaceTrack,
    draw_face_box,
    load_face_crops,
    load_precomputed_crops,
    track_faces,
    track_frames,
)
from avaffect.features.faces.detectors import (
    Detection,
    FaceDetector,
    get_detector,
    list_detectors,
    register_detector,
)
from avaffect.features.faces.tracking import FaceTracker, TrackerConfig, iou

__all__ = [
    "STANDARD_SIZES",
    "align_crop",
    "crop_matrix",
    "eye_angle",
    "CROP_PARAMS",
    "FaceTrack",
    "draw_face_box",
    "load_face_crops",
    "load_precomputed_crops",
    "track_faces",
    "track_frames",
    "Detection",
    "FaceDetector",
    "get_detector",
    "list_detectors",
    "register_detector",
    "FaceTracker",
    "TrackerConfig",
    "iou",
]
