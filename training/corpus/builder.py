"""Build the offline spoof corpus: plan jobs, run them in parallel, write manifest and summary.

Output layout under ``out_dir``::

    bonafide/<path of the clip in the bona fide manifest>.flac   normalised bona fide copies
    spoof/<system>/<split>/<utterance>.flac                     spoofs
    manifest.csv                                                ManifestRow columns, relative paths
    summary.md, summary.json                                    files/minutes per system and split

Every file, bona fide or spoof, goes through :func:`training.corpus.normalise.normalise` (16 kHz
soxr VHQ, silence trim, background of a real recording, silence pads, -26 dBFS active RMS, peak
limiter; its docstring has the policy) and is written as 16-bit FLAC through a temporary name,
so an interrupted build leaves no half-written file and a rerun skips finished files.
Everything random is drawn from generators seeded by (``seed``, system, utterance), so a build is
reproducible for a seed regardless of ``jobs``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_cm.errors import DataError
from training.data.manifest import ManifestRow, write_manifest_csv

from . import splits as splits_mod
from . import systems as systems_mod
from .normalise import SAMPLE_RATE, NormalisationSpec, normalise
from .pairs import copy_stem
from .vocoders import UnstableSynthesis

DEFAULT_MAX_MINUTES = 4.0
"""Default cap (minutes) of audio per spoofing system: 43 default systems x 4 min is about as much
spoof audio as the shared bona fide corpus holds (175 min), at roughly 15-20 CPU minutes."""

SENTENCES = Path(__file__).resolve().parents[1] / "resources" / "sentences.txt"
TTS_SOURCE = "edge_cm_tts_sentences"
MIN_OUTPUT_SECONDS = 0.25
MIN_COPY_SOURCE_SECONDS = 0.35
"""Copy synthesis skips shorter sources (seconds, after trimming): MLSA's and WORLD's analysis
windows leave too little of such a clip (recorded under ``skipped_files`` in the summary)."""
POOL_WORDS = 120
"""Words of sentence text a TTS job may draw on (about 40 s of speech, more than any target)."""


@dataclass(frozen=True)
class BuildConfig:
    """Options of one corpus build (paths explicit, nothing global)."""

    bonafide_manifest: Path
    out_dir: Path
    systems: tuple[str, ...] | None = None
    exclude_systems: tuple[str, ...] = ()
    """Systems left out of ``systems`` (or of the default assignment), e.g. to rebuild a corpus
    made before a system existed."""
    jobs: int = 1
    seed: int = 0
    max_minutes_per_system: float = DEFAULT_MAX_MINUTES
    minutes_per_system: dict[str, float] = field(default_factory=dict)
    """Caps that override ``max_minutes_per_system`` for the named systems (e.g. more vocoded
    training data); a copy-synthesis plan with a larger cap starts with the same files, so a
    rerun into the same folder only adds files."""
    lyra_dir: Path | None = None
    sentences: Path = SENTENCES
    include_bonafide: bool = True
    channel_match: bool = True
    progress: bool = True
    normalisation: NormalisationSpec = field(default_factory=NormalisationSpec)


@dataclass(frozen=True)
class Job:
    """One output file to make."""

    kind: str  # 'bonafide', 'tts' or 'copy'
    system: str
    family: str
    out_rel: str
    split: str
    speaker: str
    language: str
    source: str
    seed: int
    text: str = ""
    src_path: str = ""
    condition: str = ""
    donor_path: str = ""  # the recording whose background (and, for TTS, duration) the file takes


@dataclass
class JobResult:
    row: ManifestRow | None
    error: str = ""
    cpu_seconds: float = 0.0
    skipped: bool = False
    job: Job | None = None
    skip_reason: str = ""


class SkipJob(DataError):
    """A job that cannot make a meaningful file (e.g. too short a source); skipped, not a failure."""


def derive_seed(seed: int, *parts: str) -> int:
    """A 63-bit seed from the global seed and names, stable across processes and runs."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def read_bonafide_manifest(path: Path) -> list[dict]:
    """Rows of a bona fide manifest (shared/data/bonafide/manifest.csv layout) with absolute paths."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open bona fide manifest: {exc.strerror}", path=path) from None
    with handle:
        reader = csv.DictReader(handle)
        missing = {"path", "split"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"line 1: header lacks column(s) {sorted(missing)}", path=path,
                            hint="use the shared bona fide manifest layout (path, seconds, source, speaker, ...)")
        rows = []
        for rec in reader:
            if rec["split"] not in splits_mod.SPLIT_NAMES:
                raise DataError(f"line {reader.line_num}: split {rec['split']!r} is not train/dev/test", path=path)
            rec = dict(rec)
            rel = rec["path"]
            rec["abs_path"] = str(Path(rel) if os.path.isabs(rel) else path.parent / rel)
            rec["rel_path"] = rel
            rows.append(rec)
    absolute = [r["abs_path"] for r in rows if os.path.isabs(r["rel_path"])]
    if absolute:
        # absolute paths: name outputs by the path below the folder all of them share (unique)
        base = os.path.commonpath([os.path.dirname(a) for a in absolute])
        for r in rows:
            if os.path.isabs(r["rel_path"]):
                r["rel_path"] = Path(os.path.relpath(r["abs_path"], base)).as_posix()
    return rows


def read_sentences(path: Path) -> dict[str, list[str]]:
    """Sentences by language code from a ``LANG<TAB>sentence`` file (``#`` lines are comments)."""
    out: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            if "\t" not in line:
                raise DataError(f"line {n}: expected LANG<TAB>sentence", path=path)
            lang, text = line.split("\t", 1)
            out[lang.strip()].append(text.strip())
    return dict(out)


def _tts_text(rng: np.random.Generator, sentences: list[str]) -> str:
    """A pool of whole sentences in random order, at least :data:`POOL_WORDS` words; the job speaks
    as many of its first words as fit the target duration (:func:`_synthesize_to_length`)."""
    words: list[str] = []
    while len(words) < POOL_WORDS:
        words += sentences[int(rng.integers(len(sentences)))].split()
    return " ".join(words)


def _estimate_seconds(text: str) -> float:
    return max(0.8, len(text) / 13.0)  # about 13 characters per second of read speech


def _selected_systems(cfg: BuildConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(system -> split for systems to run, system -> reason for systems skipped)."""
    assignment = splits_mod.system_split()
    wanted = list(assignment) if cfg.systems is None else list(cfg.systems)
    for name in cfg.exclude_systems:
        systems_mod.get(name)  # an unknown name is a typo, not a no-op
    wanted = [name for name in wanted if name not in cfg.exclude_systems]
    lyra = None if cfg.lyra_dir is None else str(cfg.lyra_dir)
    run, skipped = {}, {}
    for name in wanted:
        system = systems_mod.get(name)
        if name not in assignment:
            raise DataError(f"system {name!r} has no split in the default assignment",
                            hint="add it to training.corpus.splits.DEFAULT_SPLITS")
        reason = system.unavailable(lyra)
        if reason:
            skipped[name] = reason
        else:
            run[name] = assignment[name]
    return run, skipped


def plan(cfg: BuildConfig, bona: list[dict]) -> tuple[list[Job], dict[str, str]]:
    """All jobs of a build (deterministic for the config), and the skipped systems with reasons."""
    run, skipped = _selected_systems(cfg)
    jobs: list[Job] = []
    if cfg.include_bonafide:
        for rec in bona:
            jobs.append(Job("bonafide", "bonafide", "bonafide",
                            f"bonafide/{Path(rec['rel_path']).with_suffix('.flac').as_posix()}",
                            rec["split"], rec.get("speaker", ""), rec.get("language", ""), rec.get("source", ""),
                            derive_seed(cfg.seed, "bonafide", rec["rel_path"]), src_path=rec["abs_path"],
                            condition=_bona_channel(rec)))
    sentences = read_sentences(cfg.sentences)
    for name, split in run.items():
        budget = cfg.minutes_per_system.get(name, cfg.max_minutes_per_system) * 60.0
        system = systems_mod.get(name)
        rng = np.random.default_rng(derive_seed(cfg.seed, "plan", name))
        if system.kind == "copy":
            pool = [r for r in bona if r["split"] == split]
            order = rng.permutation(len(pool))
            total = 0.0
            for i in order:
                if total >= budget:
                    break
                rec = pool[int(i)]
                total += float(rec.get("seconds") or 0.0)
                stem = copy_stem(rec["rel_path"])
                jobs.append(Job("copy", name, system.family, f"spoof/{name}/{split}/{stem}.flac", split,
                                rec.get("speaker", ""), rec.get("language", ""), rec.get("source", ""),
                                derive_seed(cfg.seed, name, stem), src_path=rec["abs_path"],
                                condition=_bona_channel(rec), donor_path=rec["abs_path"]))
        else:
            lang = system.language if system.language in sentences else "en"
            texts = sentences[lang]
            same_split = [r for r in bona if r["split"] == split]
            total, i = 0.0, 0
            if not same_split:
                continue
            while total < budget:
                text = _tts_text(rng, texts)
                # the donor gives the channel, the background and the target duration, so all three
                # follow the bona fide clips of the split
                rec = same_split[int(rng.integers(len(same_split)))]
                total += float(rec.get("seconds") or 0.0) or _estimate_seconds(text)
                channel = _bona_channel(rec) if cfg.channel_match else "clean"
                jobs.append(Job("tts", name, "tts", f"spoof/{name}/{split}/{name}_{i:05d}.flac", split,
                                name, lang, TTS_SOURCE, derive_seed(cfg.seed, name, str(i)), text=text,
                                condition=channel, donor_path=rec["abs_path"]))
                i += 1
    return jobs, skipped


def _bona_channel(rec: dict) -> str:
    from .channel import channel_of

    return channel_of(rec.get("orig_format", ""), rec.get("orig_sample_rate", "") or SAMPLE_RATE)


def write_flac_atomic(path: Path, samples: np.ndarray) -> None:
    """16-bit FLAC at 16 kHz via a temporary file in the same folder and an atomic rename."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(str(tmp), np.clip(samples, -1.0, 32767 / 32768), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _row(job: Job, out_path: Path, seconds: float) -> ManifestRow:
    label = "bonafide" if job.kind == "bonafide" else "spoof"
    return ManifestRow(path=str(out_path), label=label, speaker=job.speaker,
                       system="-" if job.kind == "bonafide" else job.system, family=job.family,
                       source=job.source, language=job.language, split=job.split, seconds=round(seconds, 3),
                       condition=job.condition)


def _speech_seconds(x: np.ndarray, spec: NormalisationSpec) -> float:
    """Active span (seconds) of a 16 kHz clip by the shared detector (0 when silent)."""
    from .normalise import set_active_level
    from training.activity import detect

    span = detect(set_active_level(x, spec), spec.activity).span_samples()
    return 0.0 if span is None else (span[1] - span[0]) / SAMPLE_RATE


def _first_words(words: list[str], seconds: float, chars_per_second: float) -> str:
    """The shortest prefix of ``words`` whose estimated length reaches ``seconds`` (at least 6
    characters: a lone short word crashes some festival voices)."""
    n, chars = 0, -1
    while n < len(words) and (chars < seconds * chars_per_second or chars < 6):
        chars += len(words[n]) + 1
        n += 1
    return " ".join(words[:max(1, n)])


def _synthesize_to_length(engine, pool: str, target_s: float, seed: int,
                          spec: NormalisationSpec) -> tuple[np.ndarray, int]:
    """Speak the first words of ``pool`` so the active span is close to ``target_s`` seconds: a first
    try at 13 characters per second, a second at the rate this voice showed if the first is off by
    more than 20 %. Returns (audio, rate) of the closer try."""
    from .normalise import resample_to_16k

    words = pool.split()
    text = _first_words(words, target_s, 13.0)
    audio, rate = engine.synthesize(text, seed)
    got = _speech_seconds(resample_to_16k(audio, rate), spec)
    if got > 0 and target_s > 0 and not 0.8 <= got / target_s <= 1.25:
        retry = _first_words(words, target_s, len(text) / got)
        if retry != text:
            audio2, rate2 = engine.synthesize(retry, seed)
            got2 = _speech_seconds(resample_to_16k(audio2, rate2), spec)
            if abs(np.log(max(got2, 1e-3) / target_s)) < abs(np.log(got / target_s)):
                return audio2, rate2
    return audio, rate


def make_audio(job: Job, lyra_dir: str | None, spec: NormalisationSpec) -> np.ndarray:
    """The normalised 16 kHz float32 samples of one job (no file written)."""
    from edge_cm.audio import read_audio

    from .normalise import prepare_donor, resample_to_16k, trim_silence

    if job.kind == "bonafide":
        return normalise(read_audio(job.src_path), SAMPLE_RATE, spec, seed=job.seed)
    system = systems_mod.get(job.system)
    donor = prepare_donor(read_audio(job.donor_path), SAMPLE_RATE, spec) if job.donor_path else None
    if job.kind == "copy":
        x = read_audio(job.src_path)
        if len(trim_silence(x, spec)) < MIN_COPY_SOURCE_SECONDS * SAMPLE_RATE:
            raise SkipJob(f"source shorter than {MIN_COPY_SOURCE_SECONDS} s after trimming", path=job.src_path)
        y = system.engine.run(x, job.seed, lyra_dir)
        return normalise(y, SAMPLE_RATE, spec, donor=donor, seed=job.seed)
    target = _speech_seconds(donor, spec) if donor is not None else _estimate_seconds(job.text)
    audio, rate = _synthesize_to_length(system.engine, job.text, target, job.seed, spec)
    audio = resample_to_16k(audio, rate)
    if job.condition and job.condition != "clean":
        from .channel import apply_channel

        audio = apply_channel(audio, job.condition)
    return normalise(audio, SAMPLE_RATE, spec, donor=donor, seed=job.seed)


def run_job(job: Job, out_dir: str, lyra_dir: str | None, spec: NormalisationSpec) -> JobResult:
    """Make one file unless it exists; never raises (errors are returned for the summary)."""
    import soundfile as sf

    out_path = Path(out_dir) / job.out_rel
    if out_path.exists():
        try:
            info = sf.info(str(out_path))
            return JobResult(_row(job, out_path, info.frames / info.samplerate), skipped=True, job=job)
        except Exception:
            out_path.unlink()  # unreadable leftovers are remade
    start = _cpu_now()
    try:
        y = make_audio(job, lyra_dir, spec)
        if len(y) < MIN_OUTPUT_SECONDS * SAMPLE_RATE or not np.any(np.abs(y) > 1e-4):
            raise DataError(f"{job.system}: output is empty or silent ({len(y)} samples)")
        write_flac_atomic(out_path, y)
    except (SkipJob, UnstableSynthesis) as exc:
        return JobResult(None, cpu_seconds=_cpu_now() - start, job=job, skip_reason=str(exc))
    except Exception as exc:  # one broken utterance must not stop a long build
        return JobResult(None, error=f"{type(exc).__name__}: {exc}", cpu_seconds=_cpu_now() - start, job=job)
    return JobResult(_row(job, out_path, len(y) / SAMPLE_RATE), cpu_seconds=_cpu_now() - start, job=job)


def _cpu_now() -> float:
    """CPU seconds of this process plus its finished children (the TTS engines run as subprocesses)."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def _worker(args: tuple) -> JobResult:
    return run_job(*args)


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)


def execute(jobs: list[Job], cfg: BuildConfig) -> list[JobResult]:
    """Run ``jobs`` over ``cfg.jobs`` processes with a tqdm progress bar."""
    from tqdm import tqdm

    lyra = None if cfg.lyra_dir is None else str(cfg.lyra_dir)
    args = [(j, str(cfg.out_dir), lyra, cfg.normalisation) for j in jobs]
    results: list[JobResult] = []
    bar = tqdm(total=len(jobs), desc="corpus", unit="file", disable=not cfg.progress, smoothing=0.05)
    if cfg.jobs <= 1:
        _init_worker()
        for a in args:
            results.append(_worker(a))
            bar.update()
    else:
        import multiprocessing as mp

        # spawn: workers must not inherit a parent's torch/onnx thread pools
        with mp.get_context("spawn").Pool(cfg.jobs, initializer=_init_worker) as pool:
            for res in pool.imap_unordered(_worker, args, chunksize=1):
                results.append(res)
                bar.update()
    bar.close()
    return results


def build(cfg: BuildConfig) -> dict:
    """Plan, run, and write manifest.csv, summary.md and summary.json; returns the summary dict."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bona = read_bonafide_manifest(cfg.bonafide_manifest)
    jobs, skipped = plan(cfg, bona)
    # heavy copy-synthesis jobs first, interleaved, so the progress bar's estimate is honest
    jobs_sorted = sorted(jobs, key=lambda j: (j.kind == "bonafide", derive_seed(cfg.seed, "order", j.out_rel)))
    t0 = time.time()
    results = execute(jobs_sorted, cfg)
    rows = sorted((r.row for r in results if r.row is not None), key=lambda r: r.path)
    write_manifest_csv(rows, out / "manifest.csv", relative_to=out)
    summary = summarise(rows, results, skipped, cfg, wall_seconds=time.time() - t0)
    from .summary import write_summary

    write_summary(summary, out)
    return summary


def summarise(rows: list[ManifestRow], results: list[JobResult], skipped: dict[str, str], cfg: BuildConfig,
              wall_seconds: float) -> dict:
    """Files, minutes, speakers and languages per system and split; failures; settings."""
    per_system: dict[str, dict] = {}
    per_split: dict[str, dict] = defaultdict(lambda: {"bonafide_files": 0, "bonafide_minutes": 0.0,
                                                       "spoof_files": 0, "spoof_minutes": 0.0})
    cpu: dict[str, float] = defaultdict(float)
    made: dict[str, int] = defaultdict(int)
    for res in results:
        if res.job is not None and not res.skipped:
            cpu[res.job.system] += res.cpu_seconds
            made[res.job.system] += 1
    speakers: dict[str, set] = defaultdict(set)
    languages: dict[str, set] = defaultdict(set)
    conditions: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        key = "bonafide" if r.label == "bonafide" else r.system
        entry = per_system.setdefault(key, {"family": r.family, "split": r.split if r.label == "spoof" else "all",
                                            "files": 0, "minutes": 0.0})
        entry["files"] += 1
        entry["minutes"] += (r.seconds or 0.0) / 60.0
        s = per_split[r.split]
        kind = "bonafide" if r.label == "bonafide" else "spoof"
        s[f"{kind}_files"] += 1
        s[f"{kind}_minutes"] += (r.seconds or 0.0) / 60.0
        if r.speaker:
            speakers[f"{kind}:{r.split}"].add(r.speaker)
        if r.language:
            languages[f"{kind}:{r.split}"].add(r.language)
        conditions[kind][r.condition or "clean"] += 1
    for name, entry in per_system.items():
        entry["minutes"] = round(entry["minutes"], 3)
        entry["cpu_seconds_this_run"] = round(cpu.get(name if name != "bonafide" else "bonafide", 0.0), 2)
    failures = [{"system": r.job.system, "file": r.job.out_rel, "error": r.error} for r in results if r.error]
    skipped_files = [{"system": r.job.system, "file": r.job.out_rel, "reason": r.skip_reason}
                     for r in results if r.skip_reason]
    return {
        "config": {"seed": cfg.seed, "jobs": cfg.jobs, "max_minutes_per_system": cfg.max_minutes_per_system,
                   "minutes_per_system": dict(cfg.minutes_per_system),
                   "systems": list(cfg.systems) if cfg.systems else "default",
                   "bonafide_manifest": str(cfg.bonafide_manifest), "channel_match": cfg.channel_match,
                   "include_bonafide": cfg.include_bonafide},
        "normalisation": cfg.normalisation.to_dict(),
        "split_assignment": {k: list(v) for k, v in splits_mod.DEFAULT_SPLITS.items()},
        "systems": dict(sorted(per_system.items())),
        "splits": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in sorted(per_split.items())},
        "speakers": {k: len(v) for k, v in sorted(speakers.items())},
        "languages": {k: sorted(v) for k, v in sorted(languages.items())},
        "conditions": {k: dict(v) for k, v in conditions.items()},
        "skipped_systems": skipped,
        "failures": failures,
        "skipped_files": skipped_files,
        "files_made_this_run": sum(made.values()),
        "files_reused": sum(1 for r in results if r.skipped),
        "wall_seconds_this_run": round(wall_seconds, 1),
        "cpu_seconds_this_run": round(sum(cpu.values()), 1),
    }
