"""Face detectors behind one protocol: ``detect(image) -> Faces``."""

from faceledger.faces.detect.base import Detector, DetectorOptions, create_detector

__all__ = ["Detector", "DetectorOptions", "create_detector"]
