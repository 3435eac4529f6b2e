"""Converters from the published benchmark distributions (ZeroSpeech 2021 lexical/syntactic
with gold.csv; spoken/topic StoryCloze folders) to the layout evaluation reads, through the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from backend.cli import main
from backend.loop.evaluate import read_item_file


def _wav(path, seed):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(1600)).astype(np.float32), 16000)


def zerospeech_tree(root, subdir="lexical", split="dev"):
    """Two ids, each spoken by two voices; id a1 has two non-words per voice (as sWUGGY may)."""
    d = root / subdir / split
    d.mkdir(parents=True)
    rows, k = [], 0
    for id_, n_bad in (("a1", 2), ("b2", 1)):
        for voice in ("Alex", "Bruce"):
            for correct in [1] + [0] * n_bad:
                name = f"f{k:03d}"
                _wav(d / f"{name}.wav", k)
                rows.append({"filename": name, "voice": voice, "frequency": "3", "word": "w",
                             "phones": "w", "id": id_, "correct": str(correct)})
                k += 1
    with (d / "gold.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_zerospeech_sets_pair_by_id_and_voice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CONFIG", str(tmp_path / "none.toml"))
    rows = zerospeech_tree(tmp_path / "zr2021")
    zerospeech_tree(tmp_path / "zr2021", "syntactic")
    data = tmp_path / "data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    for name in ("swuggy", "sblimp"):
        assert main(["convert-benchmark", name, str(tmp_path / "zr2021"), "--split", "dev"]) == 0
    pairs = read_item_file(data / "benchmarks" / "swuggy" / "dev.item")
    assert len(pairs) == 6  # a1: 2 voices x 2 non-words, b2: 2 voices x 1
    by_name = {r["filename"]: r for r in rows}
    for p in pairs:
        good, bad = by_name[p.good], by_name[p.bad]
        assert (good["correct"], bad["correct"]) == ("1", "0")
        assert (good["id"], good["voice"]) == (bad["id"], bad["voice"])
        assert (data / "benchmarks" / "swuggy" / "dev" / f"{p.good}.wav").is_file()
    assert len(read_item_file(data / "benchmarks" / "sblimp" / "dev.item")) == 6


def test_storycloze_folders_and_clear_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_CONFIG", str(tmp_path / "none.toml"))
    ssc = tmp_path / "sSC"
    ssc.mkdir()
    for n in (10, 2):
        _wav(ssc / f"{n}_correct.wav", n)
        _wav(ssc / f"{n}_incorrect.wav", n + 100)
    out = tmp_path / "benchmarks"
    assert main(["convert-benchmark", "ssc", str(ssc), "--out", str(out)]) == 0
    pairs = read_item_file(out / "ssc" / "dev.item")
    assert [(p.id, p.good, p.bad) for p in pairs] == [
        ("2", "2_correct", "2_incorrect"), ("10", "10_correct", "10_incorrect")]
    (ssc / "3_correct.wav").write_bytes((ssc / "2_correct.wav").read_bytes())
    assert main(["convert-benchmark", "tsc", str(ssc), "--out", str(out)]) == 2
    assert "story 3 lacks its incorrect ending" in capsys.readouterr().err
    assert not (out / "tsc").exists()  # nothing written from a source that does not parse
    assert main(["convert-benchmark", "swuggy", str(ssc), "--out", str(out)]) == 2
    assert "gold.csv" in capsys.readouterr().err


@pytest.mark.parametrize("bad, words", [("correct", "correct must be 0 or 1"),
                                         ("voice", r"columns \['voice'\] missing")])
def test_a_malformed_gold_csv_is_refused(tmp_path, bad, words):
    from backend.benchmarks import ConversionError, convert

    rows = zerospeech_tree(tmp_path / "zr")
    gold = tmp_path / "zr" / "lexical" / "dev" / "gold.csv"
    if bad == "correct":
        rows[0]["correct"] = "yes"
    else:
        rows = [{k: v for k, v in r.items() if k != "voice"} for r in rows]
    with gold.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ConversionError, match=words):
        convert("swuggy", tmp_path / "zr", "dev", tmp_path / "out")
