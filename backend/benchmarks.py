"""Converters from the published benchmark distributions to the layout evaluation reads.

The layout (`backend.loop.evaluate`), one directory per benchmark under `<data_dir>/benchmarks`:

    <name>/<split>.item        `filename id correct`, two rows per id (correct 1 and 0)
    <name>/<split>/<filename>.wav

Sources, as their distributions lay them out:

- sWUGGY, sBLIMP: the ZeroSpeech 2021 dataset, `lexical/<split>/` and `syntactic/<split>/`, each
  wavs plus a `gold.csv` with at least `filename,id,voice,correct`. A word and a non-word (a
  grammatical and an ungrammatical sentence) pair when they share `id` and `voice`, as the
  ZeroSpeech evaluation pairs them; an id spoken by several voices gives one pair per voice.
- Spoken StoryCloze (sSC) and topic StoryCloze (tSC): one flat folder of wavs per set, a pair
  of files per story named `<n>_correct.wav` and `<n>_incorrect.wav`.

Wavs are hard-linked where the file system allows it, else copied. Nothing is written unless
the whole source parses.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

ZEROSPEECH_DIRS = {"swuggy": "lexical", "sblimp": "syntactic"}
STORYCLOZE = ("ssc", "tsc")
CONVERTIBLE = (*ZEROSPEECH_DIRS, *STORYCLOZE)


class ConversionError(ValueError):
    pass


def convert(name: str, source: Path, split: str, out_root: Path) -> dict:
    """Convert one benchmark split; returns what was written."""
    source = Path(source)
    if name in ZEROSPEECH_DIRS:
        pairs = zerospeech_pairs(source, ZEROSPEECH_DIRS[name], split)
    elif name in STORYCLOZE:
        pairs = storycloze_pairs(source)
    else:
        raise ConversionError(f"unknown benchmark {name!r} (convertible: {', '.join(CONVERTIBLE)})")
    return write_layout(out_root / name, split, pairs)


def zerospeech_pairs(root: Path, subdir: str, split: str) -> list[tuple[str, Path, Path]]:
    """(pair id, correct wav, incorrect wav) from a ZeroSpeech 2021 `<subdir>/<split>/`."""
    d = root / subdir / split if (root / subdir).is_dir() else root
    gold = d / "gold.csv"
    if not gold.is_file():
        raise ConversionError(f"no {gold} (expected the ZeroSpeech 2021 dataset root, or its "
                              f"{subdir}/{split} folder)")
    with gold.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"filename", "id", "voice", "correct"} - set(rows[0] if rows else {})
    if missing:
        raise ConversionError(f"{gold}: columns {sorted(missing)} missing")
    groups: dict[tuple[str, str], dict[int, list[str]]] = {}
    for no, r in enumerate(rows, start=2):
        if r["correct"] not in ("0", "1"):
            raise ConversionError(f"{gold}:{no}: correct must be 0 or 1, is {r['correct']!r}")
        groups.setdefault((r["id"], r["voice"]), {0: [], 1: []})[int(r["correct"])].append(
            r["filename"])
    pairs = []
    for (id_, voice), by in groups.items():
        if not by[0] or not by[1]:
            raise ConversionError(f"{gold}: id {id_} voice {voice} lacks a correct=1 or a "
                                  "correct=0 item")
        for k, (good, bad) in enumerate((g, b) for g in by[1] for b in by[0]):
            pairs.append((f"{id_}_{voice}_{k}", d / f"{good}.wav", d / f"{bad}.wav"))
    return pairs


_STORY = re.compile(r"^(\d+)_(correct|incorrect)$")


def storycloze_pairs(folder: Path) -> list[tuple[str, Path, Path]]:
    """(story id, correct wav, incorrect wav) from a spoken / topic StoryCloze folder."""
    if not folder.is_dir():
        raise ConversionError(f"no folder {folder}")
    stories: dict[str, dict[str, Path]] = {}
    for wav in sorted(folder.glob("*.wav")):
        m = _STORY.match(wav.stem)
        if not m:
            raise ConversionError(f"{wav}: expected <n>_correct.wav or <n>_incorrect.wav")
        stories.setdefault(m.group(1), {})[m.group(2)] = wav
    if not stories:
        raise ConversionError(f"no wavs in {folder}")
    pairs = []
    for n in sorted(stories, key=int):
        s = stories[n]
        if set(s) != {"correct", "incorrect"}:
            raise ConversionError(f"{folder}: story {n} lacks its "
                                  f"{'incorrect' if 'correct' in s else 'correct'} ending")
        pairs.append((n, s["correct"], s["incorrect"]))
    return pairs


def write_layout(bench_dir: Path, split: str, pairs: Iterable[tuple[str, Path, Path]]) -> dict:
    """`<bench_dir>/<split>.item` + `<bench_dir>/<split>/*.wav` for the pairs."""
    pairs = list(pairs)
    absent = [str(p) for _, g, b in pairs for p in (g, b) if not p.is_file()]
    if absent:
        raise ConversionError(f"{len(absent)} wavs named by the source are missing, e.g. "
                              f"{absent[0]}")
    wav_dir = bench_dir / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines = ["filename id correct"]
    placed: set[str] = set()
    for id_, good, bad in pairs:
        for wav, correct in ((good, 1), (bad, 0)):
            lines.append(f"{wav.stem} {id_} {correct}")
            if wav.stem not in placed:
                _place(wav, wav_dir / f"{wav.stem}.wav")
                placed.add(wav.stem)
    item = bench_dir / f"{split}.item"
    item.write_text("\n".join(lines) + "\n")
    return {"item_file": str(item), "pairs": len(pairs), "wavs": len(placed)}


def _place(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
