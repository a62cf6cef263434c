"""Invisible, traceable watermarks: embed a keyed payload (dataset id + record index), detect it later."""

from dedupkit.watermark.detect import Detection, detect_image, detect_paths, detect_pixels, false_alarm_bound, resolve_key
from dedupkit.watermark.embed import MarkedImage, mark_image
from dedupkit.watermark.encoding import encode_marked
from dedupkit.watermark.methods import METHOD_NAMES, WatermarkMethod, choose_method, get_method
from dedupkit.watermark.payload import (
    KEY_FILE_NAME,
    PayloadCodec,
    PayloadLayout,
    WatermarkKeyError,
    dataset_fingerprint,
    false_alarm_probability,
    load_key,
    load_or_create_key,
)
from dedupkit.watermark.registry import Registry, RegistryEntry, RegistryWriter, finalize_registry
from dedupkit.watermark.stage import WatermarkStage

__all__ = [
    "Detection", "detect_image", "detect_paths", "false_alarm_bound", "detect_pixels", "resolve_key", "MarkedImage", "mark_image",
    "encode_marked", "METHOD_NAMES", "WatermarkMethod", "choose_method", "get_method", "KEY_FILE_NAME",
    "PayloadCodec", "PayloadLayout", "WatermarkKeyError", "dataset_fingerprint",
    "false_alarm_probability", "load_key", "load_or_create_key", "Registry", "RegistryEntry",
    "RegistryWriter", "finalize_registry", "WatermarkStage",
]
