"""Which spoofing system goes to which split.

Whole systems are assigned to one split, so every dev and test system is unseen in training.
Copy-synthesis systems (vocoders, codecs) resynthesise only bona fide utterances of their own split,
so a spoof also inherits the split of its source utterance (the bona fide splits are
speaker-disjoint). Each family has several systems in every split where there are enough.

Default assignment (:data:`DEFAULT_SPLITS`):

=====  ==========================================================================================
split  systems
=====  ==========================================================================================
train  vocoder: WORLD (Harvest F0), MLSA (SWIPE' F0), Griffin-Lim, Griffin-Lim from 80 and from
       40 mel bands, HiFi-GAN V1 universal (neural, 22.05 kHz), WORLD (SWIPE' F0), WORLD
       (Harvest F0, coded to 24 mel-cepstral coefficients and band aperiodicities);
       codec: Lyra 3.2 kbit/s;
       TTS: espeak-ng en-us+m3, en+f4, en+m1, en-us+klatt, de+m2, es+m4, nl+m6, ru+m3;
       festival kal_diphone, lp_diphone (it), czech_dita (cs), suo_fi_lj_diphone (fi);
       flite kal, slt
dev    vocoder: WORLD (DIO F0), MLSA (WORLD F0); codec: Lyra 6 kbit/s;
       TTS: espeak-ng en-us+f2, en+croak, fr+f3, cs+f2; festival ked_diphone, pc_diphone (it);
       flite rms, kal16
test   vocoder: LPC, HiFi-GAN (neural); codec: Lyra 9.2 kbit/s;
       TTS: espeak-ng en-gb-x-rp+m7, en-us+f5, en+m5, it+f1, pt+klatt2, fi+m2;
       festival cmu_us_slt_arctic_hts (HTS), msu_ru_nsh_clunits (ru), upc_ca_ona_hts (ca);
       flite awb; piper en-us-joe (VITS, neural)
=====  ==========================================================================================

Test holds the only neural TTS (piper) and the 16 kHz neural vocoder (HiFi-GAN), the hardest unseen
attacks. Training's HiFi-GAN universal is another trained generator (other weights, sample rate and
upsampling) of the same architecture family as test's, so test HiFi-GAN is an unseen system but not
an unseen kind of vocoder for a model trained on it.
"""
from __future__ import annotations

from edge_cm.errors import DataError

SPLIT_NAMES = ("train", "dev", "test")

DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "voc_world_harvest", "voc_mlsa_swipe", "voc_griffinlim", "voc_mel_griffinlim", "voc_mel40_griffinlim",
        "voc_hifigan_universal", "voc_world_swipe", "voc_world_coded", "codec_lyra_3200",
        "tts_espeak_en-us+m3", "tts_espeak_en+f4", "tts_espeak_en+m1", "tts_espeak_en-us+klatt",
        "tts_espeak_de+m2", "tts_espeak_es+m4", "tts_espeak_nl+m6", "tts_espeak_ru+m3",
        "tts_festival_kal_diphone", "tts_festival_lp_diphone", "tts_festival_czech_dita",
        "tts_festival_suo_fi_lj_diphone", "tts_flite_kal", "tts_flite_slt",
    ),
    "dev": (
        "voc_world_dio", "voc_mlsa_world", "codec_lyra_6000",
        "tts_espeak_en-us+f2", "tts_espeak_en+croak", "tts_espeak_fr+f3", "tts_espeak_cs+f2",
        "tts_festival_ked_diphone", "tts_festival_pc_diphone", "tts_flite_rms", "tts_flite_kal16",
    ),
    "test": (
        "voc_lpc", "voc_hifigan", "codec_lyra_9200",
        "tts_espeak_en-gb-x-rp+m7", "tts_espeak_en-us+f5", "tts_espeak_en+m5", "tts_espeak_it+f1",
        "tts_espeak_pt+klatt2", "tts_espeak_fi+m2", "tts_festival_cmu_us_slt_arctic_hts",
        "tts_festival_msu_ru_nsh_clunits", "tts_festival_upc_ca_ona_hts", "tts_flite_awb",
        "tts_piper_en-us-joe",
    ),
}


def system_split(assignment: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """Map system name -> split; raises DataError if a system is in two splits."""
    assignment = DEFAULT_SPLITS if assignment is None else assignment
    out: dict[str, str] = {}
    for split, names in assignment.items():
        if split not in SPLIT_NAMES:
            raise DataError(f"unknown split {split!r} in the system assignment", hint=f"use {SPLIT_NAMES}")
        for name in names:
            if name in out and out[name] != split:
                raise DataError(f"system {name!r} is assigned to both {out[name]!r} and {split!r}",
                                hint="a system must be unseen outside its split")
            out[name] = split
    return out


def check_disjoint(rows) -> list[str]:
    """Problems in a built manifest: a spoof system that appears in more than one split."""
    seen: dict[str, set[str]] = {}
    for r in rows:
        if r.label == "spoof":
            seen.setdefault(r.system, set()).add(r.split)
    return [f"system {s} appears in splits {sorted(v)}" for s, v in sorted(seen.items()) if len(v) > 1]
