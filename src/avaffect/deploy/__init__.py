"""A trained model as it is deployed, without torch: what its checkpoint file says (:mod:`.formats`) and its ONNX
export run by ONNX Runtime (:mod:`.onnx_model`). Between the features and the models layer: the models layer
writes these files (:mod:`avaffect.models.checkpoint`, :mod:`avaffect.models.export`), ``predict`` reads them
without importing torch (about 2 s of a command's start-up)."""
