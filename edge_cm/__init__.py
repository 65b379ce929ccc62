"""edge-cm: an on-device speech anti-spoofing countermeasure.

Three lines from audio to verdicts::

    import edge_cm
    detector = edge_cm.load()                 # the bundled default model
    clip = detector.detect_file("speech.wav") # ClipResult with one WindowResult per 4-s window
"""
from .errors import (AudioError, AudioReadError, BackendError, BundleError, BundleIntegrityError, DependencyError,
                     DeviceError, EdgeCMError, EmptyAudioError, FeatureSpecError, InvalidSamplesError)
from .detector import ClipResult, Detector, WindowResult, load
from .features import FeatureSpec
from .window import SpeechGate

__version__ = "0.1.0"

__all__ = [
    "AudioError", "AudioReadError", "BackendError", "BundleError", "BundleIntegrityError", "DependencyError",
    "DeviceError", "EdgeCMError", "EmptyAudioError", "FeatureSpec", "FeatureSpecError", "InvalidSamplesError",
    "ClipResult", "Detector", "SpeechGate", "WindowResult", "load", "__version__",
]
