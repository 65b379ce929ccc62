"""Registry of spoofing systems: every TTS voice, vocoder and codec setting the builder can run.

A system is either ``tts`` (reads sentences, family 'tts') or ``copy`` (resynthesises a bona fide
utterance, family 'vocoder' or 'codec'). Names are stable: they become the ``system`` column of the
manifest, e.g. ``tts_espeak_en-us+m3``, ``voc_world_harvest``, ``codec_lyra_3200``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import engines_tts


@dataclass(frozen=True)
class CopySynthesis:
    """A copy-synthesis method: ``run(x, seed, lyra_dir) -> y`` on 16 kHz float32 audio."""

    name: str
    family: str
    method: str
    options: tuple = ()

    def unavailable(self, lyra_dir: str | None) -> str | None:
        if self.method == "hifigan":
            from .hifigan import unavailable

            return unavailable()
        if self.method == "hifigan_universal":
            from .hifigan_universal import unavailable

            return unavailable()
        if self.method == "lyra":
            from .codec_lyra import unavailable

            return unavailable(lyra_dir)
        if self.method in ("world", "lpc"):
            needs_sptk = dict(self.options).get("f0_method") == "swipe"  # SWIPE' comes from pysptk
            return _missing("pyworld") or (_missing("pysptk") if needs_sptk else None)
        if self.method == "mlsa":
            return _missing("pysptk") or _missing("pyworld")
        return None

    def run(self, x: np.ndarray, seed: int, lyra_dir: str | None) -> np.ndarray:
        from . import vocoders

        opts = dict(self.options)
        if self.method == "world":
            return vocoders.world(x, seed, **opts)
        if self.method == "mlsa":
            return vocoders.mlsa(x, seed, **opts)
        if self.method == "griffin_lim":
            return vocoders.griffin_lim(x, seed, **opts)
        if self.method == "mel_griffin_lim":
            return vocoders.mel_griffin_lim(x, seed, **opts)
        if self.method == "lpc":
            return vocoders.lpc(x, seed, **opts)
        if self.method == "hifigan":
            from .hifigan import hifigan

            return hifigan(x, seed)
        if self.method == "hifigan_universal":
            from .hifigan_universal import hifigan_universal

            return hifigan_universal(x, seed)
        if self.method == "lyra":
            from .codec_lyra import lyra

            return lyra(x, seed, bitrate=opts["bitrate"], model_dir=str(lyra_dir))
        raise ValueError(f"unknown copy-synthesis method {self.method!r}")


def _missing(module: str) -> str | None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {module})"
    try:
        __import__(module)
    except Exception as exc:  # pysptk 1.0 needs pkg_resources (setuptools<81)
        return f"{module} fails to import: {exc}"
    return None


@dataclass(frozen=True)
class System:
    """One spoofing system: ``kind`` 'tts' (engine = a voice spec) or 'copy' (engine = CopySynthesis)."""

    name: str
    family: str
    kind: str
    engine: object = field(compare=False)
    language: str = ""

    def unavailable(self, lyra_dir: str | None = None) -> str | None:
        if self.kind == "tts":
            return self.engine.unavailable()
        return self.engine.unavailable(lyra_dir)


COPY_SYSTEMS = (
    CopySynthesis("voc_world_harvest", "vocoder", "world", (("f0_method", "harvest"),)),
    CopySynthesis("voc_world_dio", "vocoder", "world", (("f0_method", "dio"),)),
    CopySynthesis("voc_world_swipe", "vocoder", "world", (("f0_method", "swipe"),)),
    CopySynthesis("voc_world_coded", "vocoder", "world", (("f0_method", "harvest"), ("coded_dims", 24))),
    CopySynthesis("voc_mlsa_swipe", "vocoder", "mlsa", (("f0_method", "swipe"),)),
    CopySynthesis("voc_mlsa_world", "vocoder", "mlsa", (("f0_method", "world"),)),
    CopySynthesis("voc_griffinlim", "vocoder", "griffin_lim", (("iterations", 32),)),
    CopySynthesis("voc_mel_griffinlim", "vocoder", "mel_griffin_lim"),
    CopySynthesis("voc_mel40_griffinlim", "vocoder", "mel_griffin_lim",
                  (("n_mels", 40), ("n_fft", 512), ("hop", 160), ("iterations", 16))),
    CopySynthesis("voc_lpc", "vocoder", "lpc"),
    CopySynthesis("voc_hifigan", "vocoder", "hifigan"),
    CopySynthesis("voc_hifigan_universal", "vocoder", "hifigan_universal"),
    CopySynthesis("codec_lyra_3200", "codec", "lyra", (("bitrate", 3200),)),
    CopySynthesis("codec_lyra_6000", "codec", "lyra", (("bitrate", 6000),)),
    CopySynthesis("codec_lyra_9200", "codec", "lyra", (("bitrate", 9200),)),
)


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, System]:
    """Every known system by name, in a stable order."""
    out: dict[str, System] = {}
    for voice in engines_tts.ALL_TTS:
        out[voice.system] = System(voice.system, "tts", "tts", voice, voice.language)
    for c in COPY_SYSTEMS:
        out[c.name] = System(c.name, c.family, "copy", c)
    return out


def get(name: str) -> System:
    from edge_cm.errors import DataError

    reg = registry()
    if name not in reg:
        raise DataError(f"unknown system {name!r}", hint=f"known systems: {', '.join(reg)}")
    return reg[name]


CopyFn = Callable[[np.ndarray, int, "str | None"], np.ndarray]
