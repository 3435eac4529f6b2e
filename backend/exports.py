"""Exports of judgments and preference pairs: CSV, JSONL, or a Hugging Face `datasets` directory
(`save_to_disk`) that TRL's `DPOTrainer` reads directly (columns `prompt`, `chosen`, `rejected`).

The DPO text form is exactly the training one (`backend.loop.train.make_examples`): units as
`<u{k}>` tokens joined by spaces, the prompt with the tokenizer's BOS where the tokenizer does not
add it, and completions starting with a space (STACK.md's token-merge gotcha). Unit lists are
exported too, so any other text form can be rebuilt.

Files land under `<data_dir>/exports/` (or `out`), written to a temporary name and renamed, so a
reader never sees half an export. Flagged judgments are left out unless asked for; pairs with
an empty continuation always are.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from backend.files import atomic_path, atomic_write_text
from backend.runtime import Runtime
from db.schema import Judgment, PreferencePair, Prompt, Sample, TrainingRound

log = logging.getLogger(__name__)

FORMATS = ("csv", "jsonl", "hf")
JUDGMENT_FIELDS = [
    "id", "kind", "aspect", "rater", "task_key", "task_id", "qc", "user_id", "judge_name",
    "prompt_version", "sample_id", "sample_b_id", "prompt_id", "version_a", "version_b", "value",
    "choice", "shown_swapped", "rationale", "error", "flagged", "flag_reason", "created_at",
]
PAIR_FIELDS = [
    "prompt", "chosen", "rejected", "pair_id", "round_id", "round_index", "prompt_id",
    "chosen_sample_id", "rejected_sample_id", "chosen_version", "rejected_version", "source",
    "margin", "prompt_units", "chosen_units", "rejected_units", "humans", "judges",
    "judge_agreement", "provenance",
]
"""`humans`: the raters whose votes made the pair ("user:<id>"); `judges`: the AI judges whose
scores did (`name@prompt_version`); `judge_agreement`: each of those judges' agreement with
people when the round chose its pairs (the round's gating figure, `backend.trust`; None when
unmeasured), in the order of `judges`; `provenance`: the selection's whole record as JSON. A
TRL run can filter on them (e.g. only pairs some person voted on)."""


class ExportError(ValueError):
    pass


# --- rows -------------------------------------------------------------------------------------
def judgment_rows(rt: Runtime, include_flagged: bool = False) -> list[dict[str, Any]]:
    """One row per judgment. `qc` is "trap" or "gold" for a rater's answer to a quality-control
    task (a check of the rater, not an opinion about the model), else empty."""
    from db.schema import ModelVersion, RatingTask

    sa, sb = aliased(Sample), aliased(Sample)
    va, vb = aliased(ModelVersion), aliased(ModelVersion)
    q = (select(Judgment, sa.prompt_id, va.name, vb.name, RatingTask.is_trap,
                RatingTask.gold_answer)
         .join(sa, Judgment.sample_id == sa.id).join(va, sa.model_version_id == va.id)
         .outerjoin(sb, Judgment.sample_b_id == sb.id)
         .outerjoin(vb, sb.model_version_id == vb.id)
         .outerjoin(RatingTask, Judgment.task_id == RatingTask.id)
         .order_by(Judgment.id))
    if not include_flagged:
        q = q.where(Judgment.flagged.is_(False))
    rows = []
    with rt.store.read() as s:
        for j, prompt_id, name_a, name_b, is_trap, gold in s.execute(q):
            d = {f: getattr(j, f, None) for f in JUDGMENT_FIELDS}
            d.update(prompt_id=prompt_id, version_a=name_a, version_b=name_b,
                     qc="trap" if is_trap else "gold" if gold is not None else None,
                     created_at=j.created_at.isoformat() if j.created_at else None)
            rows.append(d)
    return rows


def _text_fn(rt: Runtime, required: bool):
    """make_examples bound to the runtime's unit LM (None if it cannot load and not required)."""
    try:
        from backend.loop.train import make_examples

        lm = rt.unit_lm
        return lambda triples: make_examples(lm, triples)
    except Exception as e:  # noqa: BLE001 - the LM may be absent for a CSV export
        if required:
            raise ExportError(f"the unit LM is needed for the DPO text form: {e}") from e
        log.warning("unit LM unavailable (%s); exporting units with a plain text form", e)

        def plain(triples):
            txt = lambda u: " ".join(f"<u{int(x)}>" for x in u)  # noqa: E731
            return [{"prompt": txt(p), "chosen": " " + txt(c), "rejected": " " + txt(r)}
                    for p, c, r in triples]

        return plain


def pair_rows(rt: Runtime, round_id: int | None = None, require_lm: bool = False
              ) -> list[dict[str, Any]]:
    """Preference pairs (all rounds, or training round `round_id`) with DPO text columns. A pair
    with an empty continuation on either side (stored before selection refused them) is left
    out: it teaches nothing but "say something", and DPO trainers choke on empty completions."""
    from db.schema import ModelVersion

    sc, sr = aliased(Sample), aliased(Sample)
    vc, vr = aliased(ModelVersion), aliased(ModelVersion)
    q = (select(PreferencePair, TrainingRound.round_index, Prompt.units, sc.units, sr.units,
                vc.name, vr.name, TrainingRound.judges)
         .join(TrainingRound, PreferencePair.round_id == TrainingRound.id)
         .join(Prompt, PreferencePair.prompt_id == Prompt.id)
         .join(sc, PreferencePair.chosen_sample_id == sc.id)
         .join(sr, PreferencePair.rejected_sample_id == sr.id)
         .join(vc, sc.model_version_id == vc.id).join(vr, sr.model_version_id == vr.id)
         .order_by(PreferencePair.id))
    if round_id is not None:
        with rt.store.session() as s:
            if s.get(TrainingRound, round_id) is None:
                raise ExportError(f"no training round with id {round_id}")
        q = q.where(PreferencePair.round_id == round_id)
    with rt.store.session() as s:
        raw = list(s.execute(q))
    usable = [r for r in raw if r[3] and r[4]]
    if len(usable) < len(raw):
        log.warning("left %d preference pair(s) with an empty continuation out of the export",
                    len(raw) - len(usable))
    raw = usable
    if not raw:
        return []
    texts = _text_fn(rt, require_lm)([(pu or [], cu or [], ru or [])
                                      for _pp, _ri, pu, cu, ru, _cn, _rn, _j in raw])
    rows = []
    for (pp, ridx, pu, cu, ru, cname, rname, used), t in zip(raw, texts, strict=True):
        humans, judges, agreement = pair_sources(pp.provenance or {}, used or [])
        rows.append({
            "humans": humans, "judges": judges, "judge_agreement": agreement,
            "provenance": json.dumps(pp.provenance or {}, sort_keys=True, default=str),
            **t, "pair_id": pp.id, "round_id": pp.round_id, "round_index": ridx,
            "prompt_id": pp.prompt_id, "chosen_sample_id": pp.chosen_sample_id,
            "rejected_sample_id": pp.rejected_sample_id, "chosen_version": cname,
            "rejected_version": rname, "source": pp.source,
            "margin": None if pp.margin is None else float(pp.margin),
            "prompt_units": list(pu or []), "chosen_units": list(cu or []),
            "rejected_units": list(ru or []),
        })
    return rows


def pair_sources(provenance: dict, round_judges: list[dict]
                 ) -> tuple[list[str], list[str], list[float | None]]:
    """(human raters, judge identities, their agreement at the time) behind one pair, from its
    selection record (and the records of the sources merged into it) and its round's judge
    records (`TrainingRound.judges`)."""
    humans: set[str] = set()
    names: set[str] = set()

    def walk(p: dict) -> None:
        humans.update(p.get("raters") or [])
        names.update(p.get("judges") or [])
        for part in p.get("parts") or []:
            walk(part)

    walk(provenance)
    by_name = {u["name"]: u for u in round_judges}
    judges = sorted(by_name[n]["judge"] if n in by_name else n for n in names)
    agreement_of = {u["judge"]: (u.get("agreement") or {}).get("value")
                    for u in round_judges}
    return sorted(humans), judges, [agreement_of.get(j) for j in judges]


# --- writers ----------------------------------------------------------------------------------
def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def write_rows(rows: list[dict], fields: list[str], fmt: str, dest: Path) -> Path:
    """Write rows atomically to `dest` (a file for csv/jsonl, a directory for hf)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {FORMATS}")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in fields})
        atomic_write_text(dest, buf.getvalue())
    elif fmt == "jsonl":
        atomic_write_text(dest, "".join(json.dumps({k: r.get(k) for k in fields}, default=str)
                                        + "\n" for r in rows))
    else:
        from datasets import Dataset

        cols = {k: [r.get(k) for r in rows] for k in fields}
        with atomic_path(dest) as tmp:
            Dataset.from_dict(cols).save_to_disk(str(tmp))
    return dest


def _dest(rt: Runtime, stem: str, fmt: str, out: Path | None) -> Path:
    if out is not None:
        out = Path(out)
        if out.exists():
            raise ExportError(f"{out} already exists")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "hf": "-hf"}[fmt]
    base = rt.settings.exports_dir / f"{stem}-{stamp}{suffix}"
    k = 2
    while base.exists():
        base = rt.settings.exports_dir / f"{stem}-{stamp}-{k}{suffix}"
        k += 1
    return base


def export_judgments(rt: Runtime, fmt: str = "csv", out: Path | None = None,
                     include_flagged: bool = False) -> Path:
    rows = judgment_rows(rt, include_flagged)
    return write_rows(rows, JUDGMENT_FIELDS, fmt, _dest(rt, "judgments", fmt, out))


def export_pairs(rt: Runtime, fmt: str = "hf", round_id: int | None = None,
                 out: Path | None = None) -> Path:
    """Preference pairs; `hf` gives a DPOTrainer-ready dataset (prompt/chosen/rejected first)."""
    rows = pair_rows(rt, round_id, require_lm=fmt == "hf")
    if not rows:
        raise ExportError("no preference pairs" + (f" in round {round_id}" if round_id else ""))
    stem = f"pairs-round{round_id}" if round_id is not None else "pairs"
    return write_rows(rows, PAIR_FIELDS, fmt, _dest(rt, stem, fmt, out))


def export_file(rt: Runtime, what: str, fmt: str, include_flagged: bool = False) -> Path:
    """An export as one downloadable file (the Admin tab): CSV and JSONL as written; the HF
    dataset directory zipped beside itself, since a browser downloads files, not folders."""
    if what == "judgments":
        path = export_judgments(rt, fmt, include_flagged=include_flagged)
    elif what == "pairs":
        path = export_pairs(rt, fmt)
    else:
        raise ExportError("export judgments or pairs")
    if not path.is_dir():
        return path
    zipped = path.with_name(path.name + ".zip")
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        made = Path(shutil.make_archive(str(tmp), "zip", root_dir=path.parent,
                                        base_dir=path.name))
        os.replace(made, zipped)
    finally:
        Path(str(tmp) + ".zip").unlink(missing_ok=True)
    return zipped
