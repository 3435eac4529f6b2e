"""Listen's transcripts with the training judge's faults marked: the mini judge's per-word
faults, and their HTML (escaped, marks only where the judge's words line up)."""

from __future__ import annotations

from app.listen import side_by_side, transcript_html
from models.mini import judge


def test_mini_judge_marks_the_words_it_holds_against_a_continuation(tmp_path):
    jd = judge.build(tmp_path, ["anna was in the garden"])
    marks = jd.faults("anna was in the garden", "He went to the kitchen with tom.")
    assert marks == [("he", "wrong_pronoun"), ("went", None), ("to", None), ("the", None),
                     ("kitchen", "off_topic"), ("with", None), ("tom", "other_name")]
    # the marks are the judge's evidence word by word: the same counts as its analysis
    a = jd.analyse("anna was in the garden", "He went to the kitchen with tom.")
    assert a["wrong_pronouns"] == 1 and a["off_topic"] == 1 and a["other_names"] == ["tom"]


def test_transcript_html_marks_escapes_and_refuses_misaligned_words():
    marks = [("he", "wrong_pronoun"), ("saw", None), ("a", None), ("kitchen", "off_topic")]
    html = transcript_html("He saw a <kitchen>!", marks)
    assert html == ("<mark class='fault fault-wrong_pronoun' title='wrong pronoun'>He</mark> "
                    "saw a &lt;<mark class='fault fault-off_topic' title='off topic'>kitchen"
                    "</mark>&gt;!")
    assert transcript_html("He saw two", marks) == "He saw two"  # words differ: no marks
    assert transcript_html(None, None) == "<i>(not transcribed yet)</i>"


def test_side_by_side_puts_the_baseline_then_the_newest_aligned_first():
    vs = [{"name": "b", "kind": "baseline", "round": 0}, {"name": "r1", "kind": "aligned",
                                                          "round": 1},
          {"name": "r2", "kind": "aligned", "round": 2}]
    assert [v["name"] for v in side_by_side(vs)] == ["b", "r2", "r1"]
