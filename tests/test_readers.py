"""Corpus readers and the manifest schema: small protocol files written here, and the real shared manifest."""
from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_cm.errors import DataError
from training.data.manifest import (COLUMNS, ManifestRow, by_label, by_split, by_system, filter_rows,
                                    read_manifest_csv, write_manifest_csv)
from training.data.readers import (ASVSPOOF2019_ATTACK_KIND, read_asvspoof2019_la, read_asvspoof2021_df,
                                   read_asvspoof2021_la, read_asvspoof5, read_bonafide_manifest, read_dataset,
                                   read_generic_csv, read_in_the_wild, read_wavefake)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tone_wav(path: Path, seconds: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


# ------------------------------------------------------------------------------------------- ASVspoof 2019

def la2019_protocol(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "LA" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt", text)


def test_asvspoof2019_la_rows(tmp_path):
    protocol = la2019_protocol(tmp_path, "LA_0079 LA_T_1138215 - - bonafide\n"
                                         "LA_0079 LA_T_1271820 - A01 spoof\n\n"
                                         "LA_0039 LA_E_2834763 - A11 spoof\n"
                                         "LA_0040 LA_D_1000001 - A05 spoof\n"
                                         "LA_0040 LA_E_1000002 - A13 spoof\n")
    rows = read_asvspoof2019_la(protocol)
    assert len(rows) == 5
    la_root = (tmp_path / "LA").resolve()
    assert rows[0].path == str(la_root / "ASVspoof2019_LA_train" / "flac" / "LA_T_1138215.flac")
    assert rows[2].path == str(la_root / "ASVspoof2019_LA_eval" / "flac" / "LA_E_2834763.flac")
    assert [r.label for r in rows] == ["bonafide", "spoof", "spoof", "spoof", "spoof"]
    assert [r.system for r in rows] == ["-", "A01", "A11", "A05", "A13"]
    assert [r.family for r in rows] == ["bonafide", "tts", "tts", "vc", "vc"]
    assert [r.split for r in rows] == ["train", "train", "test", "dev", "test"]
    assert rows[2].speaker == "LA_0039" and rows[2].source == "asvspoof2019_la"
    explicit = read_asvspoof2019_la(protocol, root=tmp_path / "elsewhere")
    assert explicit[1].path == str(tmp_path / "elsewhere" / "ASVspoof2019_LA_train" / "flac" / "LA_T_1271820.flac")


def test_asvspoof2019_attack_table_covers_a01_to_a19():
    assert sorted(ASVSPOOF2019_ATTACK_KIND) == [f"A{i:02d}" for i in range(1, 20)]
    assert [k for k, v in ASVSPOOF2019_ATTACK_KIND.items() if v == "tts_vc"] == ["A13", "A14", "A15"]
    assert sorted(k for k, v in ASVSPOOF2019_ATTACK_KIND.items() if v == "vc") == ["A05", "A06", "A17", "A18", "A19"]


@pytest.mark.parametrize("bad_line, message", [
    ("LA_0079 LA_T_1271820 A01 spoof", "expected 5 fields"),
    ("LA_0079 LA_T_1271820 - A20 spoof", "unknown system 'A20'"),
    ("LA_0079 LA_T_1271820 - A01 fake", "key 'fake'"),
    ("LA_0079 LA_T_1271820 - A01 bonafide", "names attack system 'A01'"),
    ("LA_0079 PA_T_1271820 - A01 spoof", "utterance ID"),
])
def test_asvspoof2019_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    protocol = la2019_protocol(tmp_path, f"LA_0079 LA_T_1138215 - - bonafide\n# comment\n{bad_line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_asvspoof2019_la(protocol)
    assert "line 3" in str(info.value) and protocol.name in str(info.value)
    assert info.value.path == str(protocol)


# ------------------------------------------------------------------------------------------- ASVspoof 2021

LA2021_KEYS = (
    "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
    "LA_0009 LA_E_1000001 none loc_tx bonafide bonafide notrim progress\n"
    "LA_0010 LA_E_1000002 g722 loc_tx A13 spoof trim hidden_track\n"
    "LA_0010 LA_E_1000003 opus sin_tx A16 spoof notrim eval\n"
)
DF2021_KEYS = (
    "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim progress traditional_vocoder - - - -\n"
    "TEF2 DF_E_2000013 low_m4a vcc2020 Task1-team20 spoof notrim eval neural_vocoder_nonautoregressive "
    "Task1 team20 FF E\n"
    "VCC2TM2 DF_E_2000020 mp3m4a vcc2018 - bonafide notrim eval bonafide - - - -\n"
    "LA_0031 DF_E_2000030 high_ogg asvspoof A09 spoof notrim hidden traditional_vocoder - - - -\n"
)


def test_asvspoof2021_la_keys_and_subsets(tmp_path):
    keys = write(tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt", LA2021_KEYS)
    rows = read_asvspoof2021_la(keys)
    assert len(rows) == 4
    assert rows[0].path == str(tmp_path.resolve() / "ASVspoof2021_LA_eval" / "flac" / "LA_E_9332881.flac")
    assert [(r.label, r.system, r.family, r.condition) for r in rows] == [
        ("spoof", "A07", "tts", "alaw"), ("bonafide", "-", "bonafide", "none"),
        ("spoof", "A13", "vc", "g722"), ("spoof", "A16", "tts", "opus")]
    assert {r.split for r in rows} == {"test"}
    assert [r.system for r in read_asvspoof2021_la(keys, subsets="eval")] == ["A07", "A16"]
    assert [r.system for r in read_asvspoof2021_la(keys, subsets=["progress", "hidden"])] == ["-", "A13"]
    with pytest.raises(DataError, match="unknown ASVspoof 2021 subset"):
        read_asvspoof2021_la(keys, subsets="dev")


def test_asvspoof2021_df_keys(tmp_path):
    keys = write(tmp_path / "keys" / "DF" / "CM" / "trial_metadata.txt", DF2021_KEYS)
    rows = read_asvspoof2021_df(keys, root=tmp_path / "df")
    assert rows[1].path == str(tmp_path / "df" / "ASVspoof2021_DF_eval" / "flac" / "DF_E_2000013.flac")
    assert [(r.system, r.family, r.source) for r in rows] == [
        ("A14", "vc", "asvspoof2021_df:asvspoof"), ("vcc2020:Task1-team20", "vc", "asvspoof2021_df:vcc2020"),
        ("-", "bonafide", "asvspoof2021_df:vcc2018"), ("A09", "tts", "asvspoof2021_df:asvspoof")]
    assert rows[1].condition == "low_m4a" and rows[1].speaker == "TEF2"
    assert [r.system for r in read_asvspoof2021_df(keys, subsets="hidden")] == ["A09"]


def test_asvspoof2021_malformed(tmp_path):
    la = write(tmp_path / "la.txt", LA2021_KEYS + "LA_0010 LA_E_1000004 opus sin_tx A16 spoof notrim\n")
    with pytest.raises(DataError, match="line 5: expected 8 fields"):
        read_asvspoof2021_la(la)
    df = write(tmp_path / "df.txt", "LA_0023 DF_E_2000011 nocodec asvspoof A14 spoof notrim dev x - - - -\n")
    with pytest.raises(DataError, match="line 1: subset 'dev'"):
        read_asvspoof2021_df(df)
    # An LA key file given to the DF reader has the wrong width.
    with pytest.raises(DataError, match="expected 13 fields"):
        read_asvspoof2021_df(write(tmp_path / "la2.txt", LA2021_KEYS))


# ------------------------------------------------------------------------------------------- ASVspoof 5

def test_asvspoof5_rows(tmp_path):
    protocol = write(tmp_path / "ASVspoof5_protocols" / "ASVspoof5.dev.track_1.tsv",
                     "D_4461 D_0000000169 F - - - AC1 A14 spoof -\n"
                     "D_4461 D_0000000170 F - - - - bonafide bonafide -\n"
                     "E_0001 E_0000000001 M C05 3 E_0000000099 AC2 A20 spoof -\n"
                     "T_0001 T_0000000001 M - - - AC3 A01 spoof -\n")
    rows = read_asvspoof5(protocol, families={"A01": "tts"})
    root = tmp_path.resolve()
    assert rows[0].path == str(root / "flac_D" / "D_0000000169.flac")
    assert rows[2].path == str(root / "flac_E_eval" / "E_0000000001.flac")
    assert rows[3].path == str(root / "flac_T" / "T_0000000001.flac")
    assert [(r.label, r.system, r.family, r.split, r.condition) for r in rows] == [
        ("spoof", "A14", "unknown", "dev", ""), ("bonafide", "-", "bonafide", "dev", ""),
        ("spoof", "A20", "unknown", "test", "C05:3"), ("spoof", "A01", "tts", "train", "")]
    assert rows[0].speaker == "D_4461"


@pytest.mark.parametrize("bad_line, message", [
    ("D_4461 D_0000000169 F - - - AC1 A14 spoof", "expected 10 fields"),
    ("D_4461 D_0000000169 F - - - AC1 bonafide spoof -", "attack label 'bonafide'"),
    ("D_4461 D_0000000169 F - - - AC1 A14 bonafide -", "names attack 'A14'"),
    ("D_4461 X_0000000169 F - - - AC1 A14 spoof -", "file name"),
])
def test_asvspoof5_malformed(tmp_path, bad_line, message):
    protocol = write(tmp_path / "p.tsv", "D_4461 D_0000000170 F - - - - bonafide bonafide -\n" + bad_line + "\n")
    with pytest.raises(DataError, match=f"line 2: .*{message}"):
        read_asvspoof5(protocol)


# ------------------------------------------------------------------------------------------- In-the-Wild

def test_in_the_wild(tmp_path):
    meta = write(tmp_path / "release_in_the_wild" / "meta.csv",
                 "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n")
    rows = read_in_the_wild(meta)
    assert [(r.label, r.family, r.system, r.speaker) for r in rows] == [
        ("spoof", "unknown", "unknown", "Alec Guinness"), ("bonafide", "bonafide", "-", "Alec Guinness")]
    assert rows[1].path == str((tmp_path / "release_in_the_wild").resolve() / "1.wav")
    assert {r.split for r in rows} == {"test"}
    bad = write(tmp_path / "bad.csv", "file,speaker,label\n0.wav,A,spoof\n1.wav,B,fake\n")
    with pytest.raises(DataError, match="line 3: label 'fake'"):
        read_in_the_wild(bad)
    no_label = write(tmp_path / "nolabel.csv", "file,speaker\n0.wav,A\n")
    with pytest.raises(DataError, match="line 1: .*lacks column 'label'"):
        read_in_the_wild(no_label)


# ------------------------------------------------------------------------------------------- WaveFake

def test_wavefake_pairs_spoofs_with_bonafide(tmp_path):
    gen = tmp_path / "generated_audio"
    for folder in ("ljspeech_melgan", "ljspeech_hifiGAN"):
        tone_wav(gen / folder / "LJ001-0001_gen.wav")
    tone_wav(gen / "jsut_multi_band_melgan" / "BASIC5000_0001_gen.wav")
    tone_wav(gen / "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech" / "gen_1_gen.wav")
    tone_wav(tmp_path / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav")
    tone_wav(tmp_path / "jsut_ver1.1" / "basic5000" / "wav" / "BASIC5000_0001.wav")
    rows = read_wavefake(gen, ljspeech_root=tmp_path / "LJSpeech-1.1", jsut_root=tmp_path / "jsut_ver1.1")
    spoofs = by_label(rows, "spoof")
    assert sorted(r.system for r in spoofs) == sorted(
        ["melgan", "hifiGAN", "multi_band_melgan", "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"])
    assert {r.system: r.family for r in spoofs}["melgan"] == "vocoder"
    assert {r.system: r.family for r in spoofs}[
        "common_voices_prompts_from_conformer_fastspeech2_pwg_ljspeech"] == "tts"
    bona = by_label(rows, "bonafide")
    assert sorted(Path(r.path).name for r in bona) == ["BASIC5000_0001.wav", "LJ001-0001.wav"]  # each once
    assert {r.speaker: r.language for r in bona} == {"ljspeech": "en", "jsut": "ja"}
    assert all(Path(r.path).is_file() for r in rows)
    # Without bona fide roots only the spoofs are listed.
    assert len(read_wavefake(gen)) == 4


def test_wavefake_missing_twin_and_bad_names(tmp_path):
    gen = tmp_path / "generated_audio"
    tone_wav(gen / "ljspeech_melgan" / "LJ009-0009_gen.wav")
    (tmp_path / "LJ" / "wavs").mkdir(parents=True)
    with pytest.raises(DataError, match="no bona fide ljspeech file for 'LJ009-0009'"):
        read_wavefake(gen, ljspeech_root=tmp_path / "LJ")
    tone_wav(gen / "ljspeech_melgan" / "LJ009-0010.wav")
    with pytest.raises(DataError, match="_gen.wav"):
        read_wavefake(gen)


# ------------------------------------------------------------------------------------------- generic CSV

def test_generic_csv_aliases_labels_and_paths(tmp_path):
    csv_path = write(tmp_path / "set" / "list.csv",
                     "filename,class,speaker,split,seconds\n"
                     "a.wav,real,s1,train,1.5\n"
                     "/abs/b.wav,fake,s2,dev,\n"
                     "c.wav,Bona-Fide,s3,test,2\n")
    rows = read_generic_csv(csv_path, source="mine")
    assert [r.label for r in rows] == ["bonafide", "spoof", "bonafide"]
    assert rows[0].path == str((tmp_path / "set").resolve() / "a.wav") and rows[1].path == "/abs/b.wav"
    assert [r.seconds for r in rows] == [1.5, None, 2.0]
    assert [r.system for r in rows] == ["-", "unknown", "-"] and {r.source for r in rows} == {"mine"}
    bad = write(tmp_path / "bad.csv", "path,label\na.wav,spoof\nb.wav,maybe\n")
    with pytest.raises(DataError, match="line 3: label 'maybe'"):
        read_generic_csv(bad)
    wrong_family = write(tmp_path / "fam.csv", "path,label,family\na.wav,spoof,tts\nb.wav,spoof,robot\n")
    with pytest.raises(DataError, match="line 3: .*family 'robot'"):
        read_generic_csv(wrong_family)
    no_path = write(tmp_path / "nopath.csv", "name,label\na.wav,spoof\n")
    with pytest.raises(DataError, match="lacks column 'path'"):
        read_generic_csv(no_path)


# ------------------------------------------------------------------------------------------- manifest

def sample_rows(base: Path) -> list[ManifestRow]:
    return [
        ManifestRow(path=str(base / "a.flac"), label="bonafide", speaker="s1", family="bonafide", source="x",
                    language="en", split="train", seconds=1.25),
        ManifestRow(path=str(base / "sub" / "b.flac"), label="spoof", speaker="s1", system="A01", family="tts",
                    source="x", language="en", split="dev", condition="alaw"),
        ManifestRow(path="/elsewhere/c.flac", label="spoof", system="A05", family="vc", split="test", seconds=3.0),
    ]


def test_manifest_roundtrip_relative_and_absolute(tmp_path):
    rows = sample_rows(tmp_path)
    out = write_manifest_csv(rows, tmp_path / "m.csv", relative_to=tmp_path)
    with open(out, newline="", encoding="utf-8") as f:
        stored = list(csv.DictReader(f))
    assert tuple(stored[0]) == COLUMNS
    assert [r["path"] for r in stored] == ["a.flac", "sub/b.flac", "/elsewhere/c.flac"]
    back = read_manifest_csv(out)
    assert [r.path for r in back] == [str(tmp_path.resolve() / "a.flac"), str(tmp_path.resolve() / "sub" / "b.flac"),
                                      "/elsewhere/c.flac"]
    assert [(r.label, r.system, r.family, r.split, r.seconds, r.condition) for r in back] == [
        (r.label, r.system, r.family, r.split, r.seconds, r.condition) for r in rows]
    assert read_manifest_csv(out, resolve_paths=False)[1].path == "sub/b.flac"


def test_manifest_paths_relative_to_the_working_directory_are_stored_relative_to_the_csv(tmp_path, monkeypatch):
    """The corpus builder with a relative ``--out`` gives rows like ``corpus/a.flac``: stored as
    ``a.flac`` in corpus/m.csv, so the manifest still reads back from any working directory."""
    (tmp_path / "corpus").mkdir()
    monkeypatch.chdir(tmp_path)
    rows = [ManifestRow(path="corpus/a.flac", label="bonafide", family="bonafide", system="-"),
            ManifestRow(path="other/b.flac", label="spoof")]
    out = write_manifest_csv(rows, Path("corpus") / "m.csv", relative_to="corpus")
    with open(out, newline="", encoding="utf-8") as f:
        assert [r["path"] for r in csv.DictReader(f)] == ["a.flac", "other/b.flac"]
    monkeypatch.chdir("/")
    assert read_manifest_csv(tmp_path / "corpus" / "m.csv")[0].path == str(tmp_path.resolve() / "corpus" / "a.flac")


def test_manifest_write_is_atomic(tmp_path):
    target = tmp_path / "m.csv"
    write_manifest_csv(sample_rows(tmp_path), target)
    before = target.read_bytes()

    def broken():
        yield sample_rows(tmp_path)[0]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_manifest_csv(broken(), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left behind


def test_manifest_filters(tmp_path):
    rows = sample_rows(tmp_path)
    assert [r.system for r in by_split(rows, "dev")] == ["A01"]
    assert [r.system for r in by_label(rows, "spoof")] == ["A01", "A05"]
    assert [r.split for r in by_system(rows, ["A05", "-"])] == ["train", "test"]
    assert [r.system for r in filter_rows(rows, label="spoof", split=("dev", "test"), family="vc")] == ["A05"]
    with pytest.raises(DataError, match="unknown split"):
        filter_rows(rows, split="validation")


def test_manifest_row_validation_and_bad_csv(tmp_path):
    with pytest.raises(DataError, match="does not match family"):
        ManifestRow(path="x.wav", label="bonafide", family="tts")
    with pytest.raises(DataError, match="label 'real'"):
        ManifestRow(path="x.wav", label="real")
    bad = write(tmp_path / "m.csv", "path,label,split,seconds\na.wav,spoof,train,1\nb.wav,spoof,valid,2\n")
    with pytest.raises(DataError, match="line 3: .*split 'valid'"):
        read_manifest_csv(bad)
    bad_seconds = write(tmp_path / "s.csv", "path,label,seconds\na.wav,bonafide,long\n")
    with pytest.raises(DataError, match="line 2: seconds 'long'"):
        read_manifest_csv(bad_seconds)
    extra = write(tmp_path / "e.csv", "path,label\na.wav,spoof,surplus\n")
    with pytest.raises(DataError, match="line 2: more fields"):
        read_manifest_csv(extra)
    short = write(tmp_path / "short.csv", "path,label,split\na.wav,spoof\n")
    with pytest.raises(DataError, match="line 2: fewer fields"):
        read_manifest_csv(short)
    defaults = write(tmp_path / "d.csv", "path,label,family,system\na.wav,bonafide,,\nb.wav,spoof,,\n")
    assert [(r.family, r.system) for r in read_manifest_csv(defaults)] == [("bonafide", "-"), ("unknown", "unknown")]
    with pytest.raises(DataError, match="cannot open manifest"):
        read_manifest_csv(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------------- dispatcher

def test_read_dataset_dispatch(tmp_path):
    protocol = la2019_protocol(tmp_path, "LA_0079 LA_T_1138215 - - bonafide\n")
    assert read_dataset("asvspoof2019_la", protocol) == read_asvspoof2019_la(protocol)
    keys = write(tmp_path / "keys" / "LA" / "CM" / "trial_metadata.txt", LA2021_KEYS)
    assert len(read_dataset("asvspoof2021_la", keys, subsets="eval")) == 2
    assert read_dataset("asvspoof2021_la", tmp_path, subsets="eval") == read_asvspoof2021_la(keys, subsets="eval")
    with pytest.raises(DataError, match="unknown dataset kind 'timit'"):
        read_dataset("timit", protocol)
    with pytest.raises(DataError, match="does not exist"):
        read_dataset("asvspoof5", tmp_path / "nope.tsv")
    with pytest.raises(DataError, match="bad options"):
        read_dataset("asvspoof2019_la", protocol, subsets="eval")


# ------------------------------------------------------------------------------------------- shared corpus

@pytest.fixture(scope="module")
def shared_rows(bonafide_dir: Path) -> list[ManifestRow]:
    rows = read_dataset("bonafide", bonafide_dir)  # the folder: reads its manifest.csv
    return rows


def test_shared_bonafide_manifest_counts(shared_rows):
    # Figures from shared/data/bonafide/README.md.
    assert len(shared_rows) == 3184
    assert Counter(r.split for r in shared_rows) == {"train": 2237, "dev": 456, "test": 491}
    assert Counter(r.source for r in shared_rows) == {
        "resemblyzer_librispeech": 351, "picovoice_speech_to_intent": 260, "picovoice_wakeword": 304,
        "mycroft_precise": 372, "fsdd": 823, "deb_asterisk_core_sounds_g722_16k": 277, "deb_fillets_ng": 220,
        "deb_tuxpaint_stamps_desc": 347, "deb_klettres": 230}
    assert sum(r.seconds for r in shared_rows) / 60 == pytest.approx(175.1, abs=0.05)
    assert {(r.label, r.family, r.system) for r in shared_rows} == {("bonafide", "bonafide", "-")}


def test_shared_bonafide_manifest_speaker_disjoint(shared_rows):
    splits_of = defaultdict(set)
    for r in shared_rows:
        if r.speaker:
            splits_of[r.speaker].add(r.split)
    assert len(splits_of) == 275  # labelled speakers, per the README
    straddling = {s: sorted(v) for s, v in splits_of.items() if len(v) > 1}
    assert straddling == {}


def test_shared_bonafide_paths_exist_and_roundtrip(shared_rows, tmp_path):
    missing = [r.path for r in shared_rows if not Path(r.path).is_file()]
    assert missing == []
    out = write_manifest_csv(shared_rows, tmp_path / "bonafide.csv")
    assert read_manifest_csv(out) == shared_rows


def test_bonafide_manifest_malformed(tmp_path):
    bad = write(tmp_path / "manifest.csv", "path,seconds,source,speaker,language,split\n"
                                           "a.flac,1.0,src,,en,train\n"
                                           "b.flac,x,src,,en,train\n")
    with pytest.raises(DataError, match="line 3: seconds 'x'"):
        read_bonafide_manifest(bad)
