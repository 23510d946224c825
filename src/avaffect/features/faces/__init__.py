"""Faces: pluggable detectors, single-face and multi-person tracking, eye-levelling alignment and square crops.

Quick use::

    from avaffect.features.faces import FacePipeline, load_face_crops, track_faces

    track = load_face_crops(rec, FacePipeline(crop_size=112))           # on rec.times: .crops, .boxes, .face_mask
    track = track_faces("clip.mp4", FacePipeline(crop_size=224))          # on the video's frames
    track = track_faces("clip.mp4", FacePipeline(detector="yunet",
                                                 detector_params={"weights": "face_detection_yunet_2023mar.onnx"}))

Every setting (detector, detect_every, tracking, alignment, crop size, shot cuts, the multi-person tracker) is one
:class:`FacePipeline`, checked when built (:mod:`.pipeline`); several people: :mod:`.people`.

Detectors (:func:`list_detectors`): ``haar`` (default, offline, from the OpenCV wheel), ``dlib``
(``pip install 'avaffect[dlib]'``), ``yunet`` and ``retinaface`` (user-supplied ONNX weights),
``precomputed`` (Aff-Wild2 ``cropped_aligned`` crops). Frames without a face get a zero crop and
``face_mask`` False; they are never dropped.
"""

from avaffect.features.faces.align import STANDARD_SIZES, align_crop, crop_matrix, eye_angle
from avaffect.features.faces.crops import (
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
from avaffect.features.faces.pipeline import FacePipeline, PeopleTracking, Tracking, face_pipeline
from avaffect.features.faces.tracking import FaceTracker, iou

__all__ = [
    "STANDARD_SIZES",
    "align_crop",
    "crop_matrix",
    "eye_angle",
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
    "FacePipeline",
    "PeopleTracking",
    "Tracking",
    "face_pipeline",
    "iou",
]
