"""The eight ResNetSE classes and how the developer corpus' systems map onto them.

Class 0 is ``bonafide`` (the runtime's score convention), then six spoofing
families, then ``adversarial`` (BIM-perturbed bona fide speech). The families
group systems by how they make the waveform, which is what a detector can hear:

========================  ==================================================================
family                    systems (name prefix in the corpus manifest)
========================  ==================================================================
tts_formant               ``tts_espeak_*`` (eSpeak NG formant synthesis)
tts_concatenative         ``tts_festival_*``, ``tts_flite_*`` (diphone / unit concatenation)
tts_neural                ``tts_piper_*`` (VITS neural TTS)
vocoder_source_filter     ``voc_world``, ``voc_mlsa``, ``voc_lpc`` (excitation + spectral filter)
vocoder_spectrogram       ``voc_griffinlim``, ``voc_mel*``, ``voc_hifigan`` (spectrogram inversion)
codec_neural              ``codec_lyra_*`` (Lyra neural speech codec)
========================  ==================================================================
"""
from __future__ import annotations

from edge_cm.errors import DataError

SPOOF_FAMILIES: tuple[str, ...] = ("tts_formant", "tts_concatenative", "tts_neural",
                                   "vocoder_source_filter", "vocoder_spectrogram", "codec_neural")
ADVERSARIAL = "adversarial"
CLASSES: tuple[str, ...] = ("bonafide",) + SPOOF_FAMILIES + (ADVERSARIAL,)
ADVERSARIAL_INDEX = len(CLASSES) - 1

# (prefix, family); the first matching prefix wins.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("tts_espeak", "tts_formant"),
    ("tts_festival", "tts_concatenative"),
    ("tts_flite", "tts_concatenative"),
    ("tts_piper", "tts_neural"),
    ("voc_world", "vocoder_source_filter"),
    ("voc_mlsa", "vocoder_source_filter"),
    ("voc_lpc", "vocoder_source_filter"),
    ("voc_griffinlim", "vocoder_spectrogram"),
    ("voc_hifigan", "vocoder_spectrogram"),
    ("voc_mel", "vocoder_spectrogram"),
    ("codec_lyra", "codec_neural"),
    # Bare engine names, as training/toy_corpus.py writes them (espeak_en, flite_kal).
    ("espeak", "tts_formant"),
    ("festival", "tts_concatenative"),
    ("flite", "tts_concatenative"),
    ("piper", "tts_neural"),
)


def family_of(system: str, *, source: str = "<manifest>") -> str:
    """The spoofing family of a corpus system name, e.g. ``tts_flite_kal`` -> ``tts_concatenative``."""
    for prefix, family in _PREFIXES:
        if system.startswith(prefix):
            return family
    raise DataError(f"system {system!r} belongs to none of the six ResNetSE spoofing families", path=source,
                    hint="add its prefix to training/resnetse/families.py (_PREFIXES)")


def class_index(system: str, *, source: str = "<manifest>") -> int:
    """Class index of a system name; ``bonafide`` maps to 0."""
    if system == "bonafide":
        return 0
    return CLASSES.index(family_of(system, source=source))
