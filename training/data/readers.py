"""Readers of public anti-spoofing corpora into :class:`~training.data.manifest.ManifestRow` lists.

Supported (``read_dataset`` kinds):

* ``asvspoof2019_la``: CM protocol ``SPEAKER UTT - SYSTEM KEY`` (``A01``-``A19``, ``-`` for bona fide);
  audio ``<root>/ASVspoof2019_LA_<train|dev|eval>/flac/<UTT>.flac``.
* ``asvspoof2021_la`` / ``asvspoof2021_df``: eval-package keys ``keys/{LA,DF}/CM/trial_metadata.txt``
  (LA 8 columns ``SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET``; DF 13 columns
  ``SPK UTT COMPRESSION SOURCE ATTACK KEY TRIM SUBSET VOCODER TASK TEAM GENDER_PAIR LANGUAGE``);
  subsets ``eval``, ``progress``, ``hidden``; audio ``<root>/ASVspoof2021_<LA|DF>_eval/flac/<UTT>.flac``.
* ``asvspoof5``: ``ASVspoof5.{train,dev.track_1,eval.track_1}.tsv`` (space separated, 10 columns
  ``SPEAKER UTT GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP``);
  audio ``<root>/flac_T|flac_D|flac_E_eval/<UTT>.flac``.
* ``in_the_wild``: ``meta.csv`` with ``file,speaker,label`` (``bona-fide`` / ``spoof``).
* ``wavefake``: ``generated_audio/<corpus>_<vocoder>/*_gen.wav``, paired with LJSpeech
  ``wavs/*.wav`` or JSUT ``basic5000/wav/*.wav`` bona fide files.
* ``csv``: a generic CSV with at least a path and a label column.
* ``bonafide``: the project's shared bona fide corpus manifest (``shared/data/bonafide/manifest.csv``).

Every malformed line raises :class:`~edge_cm.errors.DataError` naming the file and line number.
"""
from __future__ import annotations

import csv
import inspect
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from edge_cm.errors import DataError

from .manifest import NO_SYSTEM, SPLITS, ManifestRow, read_manifest_csv

# ASVspoof 2019 LA attacks (Wang et al., "ASVspoof 2019: a large-scale public database of synthesized,
# converted and replayed speech", 2020, Table 1): kind of each system. Hybrids synthesise speech with
# TTS and then convert it to the target voice.
ASVSPOOF2019_ATTACK_KIND = {
    "A01": "tts", "A02": "tts", "A03": "tts", "A04": "tts", "A05": "vc", "A06": "vc",
    "A07": "tts", "A08": "tts", "A09": "tts", "A10": "tts", "A11": "tts", "A12": "tts",
    "A13": "tts_vc", "A14": "tts_vc", "A15": "tts_vc", "A16": "tts", "A17": "vc", "A18": "vc", "A19": "vc",
}
# The manifest has no hybrid family; a hybrid's output voice comes from its VC stage, so it counts as VC.
_KIND_TO_FAMILY = {"tts": "tts", "vc": "vc", "tts_vc": "vc"}
ASVSPOOF2019_FAMILY = {k: _KIND_TO_FAMILY[v] for k, v in ASVSPOOF2019_ATTACK_KIND.items()}

ASVSPOOF2021_SUBSETS = ("eval", "progress", "hidden")

# WaveFake vocoder folders that are a full TTS pipeline rather than vocoder resynthesis of real mels.
_WAVEFAKE_TTS_MARKERS = ("conformer", "fastspeech", "tacotron")

_BONAFIDE_WORDS = {"bonafide", "bona-fide", "bona fide", "bona_fide", "real", "genuine", "human"}
_SPOOF_WORDS = {"spoof", "spoofed", "fake", "synthetic", "deepfake"}


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of every non-blank, non-comment line."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open protocol: {exc.strerror}", path=path) from exc
    with handle:
        for number, text in enumerate(handle, start=1):
            stripped = text.strip()
            if stripped and not stripped.startswith("#"):
                yield number, stripped.split()


def _fail(path: Path, line: int, message: str, hint: str | None = None) -> DataError:
    return DataError(f"line {line}: {message}", path=path, hint=hint)


def _check_key(path: Path, line: int, key: str) -> str:
    if key not in ("bonafide", "spoof"):
        raise _fail(path, line, f"key {key!r} is neither 'bonafide' nor 'spoof'")
    return key


def _normalise_label(text: str) -> str | None:
    word = text.strip().lower()
    if word in _BONAFIDE_WORDS:
        return "bonafide"
    if word in _SPOOF_WORDS:
        return "spoof"
    return None


# ---------------------------------------------------------------------------------------------- ASVspoof 2019

_PART_BY_PREFIX = {"T": ("train", "train"), "D": ("dev", "dev"), "E": ("eval", "test")}


def read_asvspoof2019_la(protocol: str | Path, root: str | Path | None = None) -> list[ManifestRow]:
    """ASVspoof 2019 LA CM protocol (``ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt``).

    ``root`` is the ``LA`` folder holding ``ASVspoof2019_LA_<part>/flac``; by default the
    protocol's grandparent (protocols live in ``LA/ASVspoof2019_LA_cm_protocols``). The part
    comes from the utterance ID (``LA_T_`` train, ``LA_D_`` dev, ``LA_E_`` eval -> split 'test').
    """
    protocol = Path(protocol)
    base = Path(root) if root is not None else protocol.resolve().parent.parent
    # os.path.join on strings: pathlib is several times slower over ~10^5 protocol lines.
    part_dirs = {part: os.path.join(base, f"ASVspoof2019_LA_{part}", "flac") for part, _ in _PART_BY_PREFIX.values()}
    rows = []
    for line, cols in _lines(protocol):
        if len(cols) != 5:
            raise _fail(protocol, line, f"expected 5 fields 'SPEAKER UTT - SYSTEM KEY', got {len(cols)}")
        speaker, utt, _, system, key = cols
        key = _check_key(protocol, line, key)
        match = re.fullmatch(r"LA_([TDE])_\d+", utt)
        if not match:
            raise _fail(protocol, line, f"utterance ID {utt!r} is not of the form LA_T_/LA_D_/LA_E_<digits>")
        part, split = _PART_BY_PREFIX[match.group(1)]
        if key == "bonafide":
            if system != NO_SYSTEM:
                raise _fail(protocol, line, f"bona fide trial names attack system {system!r}")
            family = "bonafide"
        else:
            if system not in ASVSPOOF2019_FAMILY:
                raise _fail(protocol, line, f"spoof trial has unknown system {system!r}", hint="expected A01-A19")
            family = ASVSPOOF2019_FAMILY[system]
        rows.append(ManifestRow(
            path=os.path.join(part_dirs[part], f"{utt}.flac"), label=key, speaker=speaker,
            system=system, family=family, source="asvspoof2019_la", language="en", split=split))
    return rows


# ---------------------------------------------------------------------------------------------- ASVspoof 2021

def _subset_filter(subsets: str | Sequence[str] | None) -> set[str] | None:
    if subsets is None:
        return None
    wanted = {subsets} if isinstance(subsets, str) else set(subsets)
    unknown = wanted - set(ASVSPOOF2021_SUBSETS)
    if unknown:
        raise DataError(f"unknown ASVspoof 2021 subset(s) {sorted(unknown)}", hint=f"use {ASVSPOOF2021_SUBSETS}")
    return wanted


def _read_asvspoof2021(track: str, keys: str | Path, root: str | Path | None,
                       subsets: str | Sequence[str] | None) -> list[ManifestRow]:
    keys = Path(keys)
    wanted = _subset_filter(subsets)
    n_cols = 8 if track == "LA" else 13
    # Default root: the folder that holds both keys/ and ASVspoof2021_<track>_eval/.
    if root is not None:
        base = Path(root)
    else:  # keys/<track>/CM/trial_metadata.txt sits three folders below the corpus root
        parents = keys.resolve().parents
        base = parents[3] if len(parents) > 3 else keys.resolve().parent
    audio_dir = os.path.join(base, f"ASVspoof2021_{track}_eval", "flac")
    rows = []
    for line, cols in _lines(keys):
        if len(cols) != n_cols:
            raise _fail(keys, line, f"expected {n_cols} fields in an ASVspoof 2021 {track} key line, got {len(cols)}")
        speaker, utt, condition, origin, attack, key, _trim, subset = cols[:8]
        key = _check_key(keys, line, key)
        if not re.fullmatch(rf"{track}_E_\d+", utt):
            raise _fail(keys, line, f"utterance ID {utt!r} is not of the form {track}_E_<digits>")
        subset = "hidden" if subset.startswith("hidden") else subset
        if subset not in ASVSPOOF2021_SUBSETS:
            raise _fail(keys, line, f"subset {subset!r} is not one of {ASVSPOOF2021_SUBSETS}")
        if wanted is not None and subset not in wanted:
            continue
        language = "en"
        if key == "bonafide":
            system, family = NO_SYSTEM, "bonafide"
        elif track == "LA" or origin == "asvspoof":
            if attack not in ASVSPOOF2019_FAMILY:
                raise _fail(keys, line, f"spoof trial has unknown attack {attack!r}", hint="expected A01-A19")
            system, family = attack, ASVSPOOF2019_FAMILY[attack]
        else:
            # VCC 2018 / 2020 submissions: voice conversion systems named like 'Task1-team20'.
            system, family = f"{origin}:{attack}", "vc"
        if track == "DF" and origin == "vcc2020":
            language = ""  # cross-lingual task: the source speech is not always English
        source = f"asvspoof2021_{track.lower()}" + ("" if track == "LA" else f":{origin}")
        rows.append(ManifestRow(
            path=os.path.join(audio_dir, f"{utt}.flac"), label=key, speaker=speaker, system=system, family=family,
            source=source, language=language, split="test", condition=condition))
    return rows


def read_asvspoof2021_la(keys: str | Path, root: str | Path | None = None,
                         subsets: str | Sequence[str] | None = None) -> list[ManifestRow]:
    """ASVspoof 2021 LA keys (``keys/LA/CM/trial_metadata.txt``); ``subsets`` picks eval/progress/hidden.

    ``root`` holds ``ASVspoof2021_LA_eval/flac``; by default the folder above ``keys/``.
    ``condition`` carries the codec (none, alaw, pstn, g722, ulaw, gsm, opus).
    """
    return _read_asvspoof2021("LA", keys, root, subsets)


def read_asvspoof2021_df(keys: str | Path, root: str | Path | None = None,
                         subsets: str | Sequence[str] | None = None) -> list[ManifestRow]:
    """ASVspoof 2021 DF keys (``keys/DF/CM/trial_metadata.txt``); ``subsets`` picks eval/progress/hidden.

    ``condition`` carries the compression (nocodec, low_mp3, ...); VCC spoofs get system
    ``<vcc2018|vcc2020>:<attack>`` and family 'vc'.
    """
    return _read_asvspoof2021("DF", keys, root, subsets)


# ---------------------------------------------------------------------------------------------- ASVspoof 5

_ASVSPOOF5_DIRS = {"T": ("flac_T", "train"), "D": ("flac_D", "dev"), "E": ("flac_E_eval", "test")}


def read_asvspoof5(protocol: str | Path, root: str | Path | None = None,
                   families: Mapping[str, str] | None = None) -> list[ManifestRow]:
    """ASVspoof 5 track-1 protocol (``ASVspoof5.train.tsv``, ``ASVspoof5.dev.track_1.tsv``, ...).

    ``root`` holds ``flac_T``, ``flac_D`` and ``flac_E_eval``; by default the protocol's parent's
    parent (protocols unpack into ``ASVspoof5_protocols/``). The attack family is 'unknown' unless
    ``families`` maps attack labels (``A01``...) to families. ``condition`` is ``<CODEC>:<CODEC_Q>``
    for coded utterances.
    """
    protocol = Path(protocol)
    base = Path(root) if root is not None else protocol.resolve().parent.parent
    families = dict(families or {})
    rows = []
    for line, cols in _lines(protocol):
        if len(cols) != 10:
            raise _fail(protocol, line, f"expected 10 fields 'SPEAKER UTT GENDER CODEC CODEC_Q CODEC_SEED "
                                        f"ATTACK_TAG ATTACK_LABEL KEY TMP', got {len(cols)}")
        speaker, utt, _gender, codec, codec_q, _seed, _tag, attack, key, _tmp = cols
        key = _check_key(protocol, line, key)
        match = re.fullmatch(r"([TDE])_\d+", utt)
        if not match:
            raise _fail(protocol, line, f"file name {utt!r} is not of the form T_/D_/E_<digits>")
        folder, split = _ASVSPOOF5_DIRS[match.group(1)]
        if key == "bonafide":
            if attack not in ("bonafide", NO_SYSTEM):
                raise _fail(protocol, line, f"bona fide trial names attack {attack!r}")
            system, family = NO_SYSTEM, "bonafide"
        else:
            if not re.fullmatch(r"A\d\d", attack):
                raise _fail(protocol, line, f"spoof trial has attack label {attack!r}, expected A<two digits>")
            system, family = attack, families.get(attack, "unknown")
        condition = "" if codec == NO_SYSTEM else f"{codec}:{codec_q}"
        rows.append(ManifestRow(
            path=os.path.join(base, folder, f"{utt}.flac"), label=key, speaker=speaker, system=system, family=family,
            source="asvspoof5", language="en", split=split, condition=condition))
    return rows


# ---------------------------------------------------------------------------------------------- In-the-Wild

def read_in_the_wild(meta_csv: str | Path, root: str | Path | None = None, split: str = "test") -> list[ManifestRow]:
    """In-the-Wild ``meta.csv`` (``file,speaker,label``; labels ``bona-fide`` / ``spoof``).

    Audio is ``<root>/<file>``, ``root`` defaulting to the CSV's folder. All rows get ``split``.
    """
    meta_csv = Path(meta_csv)
    base = Path(root) if root is not None else meta_csv.resolve().parent
    if split not in SPLITS:
        raise DataError(f"split {split!r} is not one of {SPLITS}")
    rows = []
    for line, record in _csv_records(meta_csv, required=("file", "speaker", "label")):
        label = _normalise_label(record["label"])
        if label is None or record["label"].strip() not in ("bona-fide", "spoof"):
            raise _fail(meta_csv, line, f"label {record['label']!r} is neither 'bona-fide' nor 'spoof'")
        if not record["file"].strip():
            raise _fail(meta_csv, line, "empty file name")
        rows.append(ManifestRow(
            path=str(base / record["file"].strip()), label=label, speaker=record["speaker"].strip(),
            system=NO_SYSTEM if label == "bonafide" else "unknown",
            family="bonafide" if label == "bonafide" else "unknown", source="in_the_wild", language="en",
            split=split))
    return rows


def _csv_records(path: Path, required: Sequence[str],
                 aliases: Mapping[str, Sequence[str]] | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, record) of a CSV, with ``required`` columns present (after ``aliases``)."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot open CSV: {exc.strerror}", path=path) from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rename = {}
        for name in required:
            for candidate in (name, *((aliases or {}).get(name, ()))):
                if candidate in header:
                    rename[name] = candidate
                    break
            else:
                raise DataError(f"line 1: header {header} lacks column {name!r}", path=path,
                                hint=f"accepted names: {[name, *((aliases or {}).get(name, ()))]}")
        for record in reader:
            if None in record:
                raise _fail(path, reader.line_num, "more fields than header columns")
            if any(record.get(col) is None for col in rename.values()):
                raise _fail(path, reader.line_num, "fewer fields than header columns")
            out = {k: (v or "") for k, v in record.items()}
            out.update({name: record[col] for name, col in rename.items()})
            yield reader.line_num, out


# ---------------------------------------------------------------------------------------------- WaveFake

def _wavefake_folder(name: str) -> tuple[str, str]:
    """(bona fide corpus, system) of a WaveFake ``generated_audio`` folder name."""
    lowered = name.lower()
    for corpus in ("ljspeech", "jsut"):
        if lowered.startswith(corpus + "_"):
            return corpus, name[len(corpus) + 1:]
    # The TTS folder (common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech) ends with its corpus.
    return ("ljspeech" if lowered.endswith("ljspeech") else "jsut" if lowered.endswith("jsut") else ""), name


def read_wavefake(generated_root: str | Path, ljspeech_root: str | Path | None = None,
                  jsut_root: str | Path | None = None) -> list[ManifestRow]:
    """WaveFake spoofs from ``<generated_root>/<corpus>_<vocoder>/*_gen.wav`` plus paired bona fide.

    Each spoof's bona fide twin (the file it was resynthesised from) is added once when the
    corpus root is given: LJSpeech ``<ljspeech_root>/wavs/<ID>.wav`` (or ``<ljspeech_root>/<ID>.wav``),
    JSUT ``<jsut_root>/basic5000/wav/<ID>.wav``. Missing twins raise DataError. No split is set.
    """
    generated_root = Path(generated_root)
    if not generated_root.is_dir():
        raise DataError("WaveFake generated_audio folder not found", path=generated_root)
    bona_roots = {"ljspeech": ljspeech_root, "jsut": jsut_root}
    language = {"ljspeech": "en", "jsut": "ja"}
    rows: list[ManifestRow] = []
    seen_bona: set[str] = set()
    folders = sorted(p for p in generated_root.iterdir() if p.is_dir())
    if not folders:
        raise DataError("no vocoder folders under WaveFake generated_audio", path=generated_root)
    for folder in folders:
        corpus, system = _wavefake_folder(folder.name)
        family = "tts" if any(m in folder.name.lower() for m in _WAVEFAKE_TTS_MARKERS) else "vocoder"
        for wav in sorted(folder.glob("*.wav")):
            if not wav.stem.endswith("_gen"):
                raise DataError("WaveFake file name does not end in '_gen.wav'", path=wav)
            rows.append(ManifestRow(
                path=str(wav), label="spoof", speaker=corpus, system=system, family=family,
                source="wavefake", language=language.get(corpus, "")))
            utt = wav.stem[: -len("_gen")]
            root = bona_roots.get(corpus)
            if root is None or family == "tts" or utt in seen_bona:
                continue
            twin = _find_bonafide_twin(corpus, Path(root), utt)
            if twin is None:
                raise DataError(f"no bona fide {corpus} file for {utt!r} under {root}", path=wav,
                                hint="pass the corpus root that holds wavs/ (LJSpeech) or basic5000/wav/ (JSUT)")
            seen_bona.add(utt)
            rows.append(ManifestRow(
                path=str(twin), label="bonafide", speaker=corpus, system=NO_SYSTEM, family="bonafide",
                source="wavefake", language=language[corpus]))
    return rows


def _find_bonafide_twin(corpus: str, root: Path, utt: str) -> Path | None:
    candidates = ([root / "wavs" / f"{utt}.wav", root / f"{utt}.wav"] if corpus == "ljspeech"
                  else [root / "basic5000" / "wav" / f"{utt}.wav", root / "wav" / f"{utt}.wav", root / f"{utt}.wav"])
    return next((c for c in candidates if c.is_file()), None)


# ---------------------------------------------------------------------------------------------- CSV manifests

_GENERIC_ALIASES = {"path": ("file", "filename", "filepath", "audio", "wav"), "label": ("key", "class", "target")}


def read_generic_csv(csv_path: str | Path, root: str | Path | None = None, *, source: str = "") -> list[ManifestRow]:
    """Any CSV with a path column (``path``/``file``/``filename``/``audio``/``wav``) and a label column
    (``label``/``key``/``class``; values such as bonafide, bona-fide, real, spoof, fake).

    Optional columns of the manifest schema (speaker, system, family, source, language, split,
    seconds, condition) are kept. Relative paths resolve against ``root`` (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    base = Path(root) if root is not None else csv_path.resolve().parent
    rows = []
    for line, record in _csv_records(csv_path, required=("path", "label"), aliases=_GENERIC_ALIASES):
        label = _normalise_label(record["label"])
        if label is None:
            raise _fail(csv_path, line, f"label {record['label']!r} is not a bona fide or spoof word",
                        hint=f"use one of {sorted(_BONAFIDE_WORDS | _SPOOF_WORDS)}")
        audio = record["path"].strip()
        if not audio:
            raise _fail(csv_path, line, "empty path")
        seconds_text = record.get("seconds", "").strip()
        try:
            seconds = float(seconds_text) if seconds_text else None
        except ValueError:
            raise _fail(csv_path, line, f"seconds {seconds_text!r} is not a number") from None
        default_family = "bonafide" if label == "bonafide" else "unknown"
        try:
            rows.append(ManifestRow(
                path=audio if Path(audio).is_absolute() else str(base / audio), label=label,
                speaker=record.get("speaker", "").strip(),
                system=record.get("system", "").strip() or (NO_SYSTEM if label == "bonafide" else "unknown"),
                family=record.get("family", "").strip() or default_family,
                source=record.get("source", "").strip() or source,
                language=record.get("language", "").strip(), split=record.get("split", "").strip(),
                seconds=seconds, condition=record.get("condition", "").strip()))
        except DataError as exc:
            raise _fail(csv_path, line, str(exc)) from None
    return rows


def read_bonafide_manifest(manifest: str | Path) -> list[ManifestRow]:
    """The shared bona fide corpus (``shared/data/bonafide/manifest.csv``): label and family 'bonafide',
    system '-', the manifest's own source, speaker, language, split and seconds; paths made absolute."""
    manifest = Path(manifest)
    base = manifest.resolve().parent
    rows = []
    for line, record in _csv_records(manifest, required=("path", "seconds", "source", "speaker", "language", "split")):
        split = record["split"].strip()
        if split not in ("train", "dev", "test"):
            raise _fail(manifest, line, f"split {split!r} is not train, dev or test")
        try:
            seconds = float(record["seconds"])
        except ValueError:
            raise _fail(manifest, line, f"seconds {record['seconds']!r} is not a number") from None
        if not record["path"].strip():
            raise _fail(manifest, line, "empty path")
        try:
            rows.append(ManifestRow(
                path=str(base / record["path"].strip()), label="bonafide", speaker=record["speaker"].strip(),
                system=NO_SYSTEM, family="bonafide", source=record["source"].strip(),
                language=record["language"].strip(), split=split, seconds=seconds))
        except DataError as exc:
            raise _fail(manifest, line, str(exc)) from None
    return rows


# ---------------------------------------------------------------------------------------------- dispatcher

READERS: dict[str, Callable[..., list[ManifestRow]]] = {
    "asvspoof2019_la": read_asvspoof2019_la,
    "asvspoof2021_la": read_asvspoof2021_la,
    "asvspoof2021_df": read_asvspoof2021_df,
    "asvspoof5": read_asvspoof5,
    "in_the_wild": read_in_the_wild,
    "wavefake": read_wavefake,
    "csv": read_generic_csv,
    "manifest": read_manifest_csv,
    "bonafide": read_bonafide_manifest,
}


#: File read when ``read_dataset`` is given a corpus folder instead of its protocol / meta file.
DEFAULT_FILES = {
    "asvspoof2021_la": Path("keys", "LA", "CM", "trial_metadata.txt"),
    "asvspoof2021_df": Path("keys", "DF", "CM", "trial_metadata.txt"),
    "in_the_wild": Path("meta.csv"),
    "bonafide": Path("manifest.csv"),
}


def read_dataset(kind: str, root_or_protocol: str | Path, **options) -> list[ManifestRow]:
    """Read a corpus of ``kind`` (a key of :data:`READERS`) from its protocol / meta file or root.

    Given a folder, the kinds in :data:`DEFAULT_FILES` read their usual file inside it.
    ``options`` go to the reader, e.g. ``root=``, ``subsets=`` (ASVspoof 2021),
    ``ljspeech_root=`` (WaveFake). ``manifest`` reads this project's own manifest CSV.
    """
    try:
        reader = READERS[kind]
    except KeyError:
        raise DataError(f"unknown dataset kind {kind!r}", hint=f"use one of {sorted(READERS)}") from None
    target = Path(root_or_protocol)
    if target.is_dir() and kind in DEFAULT_FILES:
        target = target / DEFAULT_FILES[kind]
    if not target.exists():
        raise DataError(f"{kind} protocol or folder does not exist", path=target)
    try:
        inspect.signature(reader).bind(target, **options)
    except TypeError as exc:
        raise DataError(f"bad options {sorted(options)} for dataset kind {kind!r}: {exc}") from None
    return reader(target, **options)
