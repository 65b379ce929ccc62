"""On-the-fly, seedable augmentation of 16 kHz mono float32 speech.

Every transform is a small dataclass called as ``transform(audio, rng)`` and
returning ``(audio, label)``; ``rng`` is a numpy Generator or an int seed, and the
same seed gives the same output. Noise, room reverberation, RawBoost channel
distortion, band limiting, codecs and speed changes. Labels of codec and speed changes are the
pseudo-label classes :data:`CODEC_LABELS` and :data:`SPEED_LABELS`.
"""
from .bandlimit import LOWPASS_LABEL, LowPass, low_pass
from .codec import CODEC_LABELS, CODECS, BITRATES_KBPS, CodecAugment, codec_label, codec_round_trip, find_ffmpeg
from .compose import Compose, RandomAugment, Step, pseudo_labels
from .noise import NOISE_KINDS, NOISE_LABELS, AddNoise, babble_noise, colored_noise, load_noise_files, mix_at_snr
from .rawboost import RAWBOOST_LABELS, RAWBOOST_MODES, RawBoost, band_stop_filter
from .reverb import REVERB_LABEL, RoomReverb, apply_rir, schroeder_rt60, simulate_rir
from .speed import SPEED_BUCKETS, SPEED_LABELS, SpeedChange, change_speed, speed_label

__all__ = [
    "AddNoise", "BITRATES_KBPS", "LOWPASS_LABEL", "LowPass", "low_pass", "CODECS", "CODEC_LABELS", "CodecAugment", "Compose", "NOISE_KINDS",
    "NOISE_LABELS", "RAWBOOST_LABELS", "RAWBOOST_MODES", "REVERB_LABEL", "RandomAugment", "RawBoost",
    "RoomReverb", "SPEED_BUCKETS", "SPEED_LABELS", "SpeedChange", "Step", "apply_rir", "babble_noise",
    "band_stop_filter", "change_speed", "codec_label", "codec_round_trip", "colored_noise", "find_ffmpeg",
    "load_noise_files", "mix_at_snr", "pseudo_labels", "schroeder_rt60", "simulate_rir", "speed_label",
]
