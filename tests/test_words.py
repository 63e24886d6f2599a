"""Words to speaker turns: overlap-aware choice, words outside turns, re-cutting segments."""

from __future__ import annotations

from callqa.speech.transcript import Segment, Word
from callqa.speech.turns import SpeakerTurn
from callqa.speech.words import assign_words, speaker_at


def w(start: float, end: float, word: str) -> Word:
    return Word(start=start, end=end, word=word)


def segment(*words: Word, text: str | None = None) -> Segment:
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text=text if text is not None else "".join(x.word for x in words),
        words=list(words),
    )


def turn(start: float, end: float, speaker: int) -> SpeakerTurn:
    return SpeakerTurn(start=start, end=end, speaker=speaker)


def test_a_segment_spanning_two_speakers_is_cut_in_two():
    stt = segment(
        w(0.0, 0.5, " Hello,"),
        w(0.5, 1.2, " Northwind."),
        w(1.6, 1.9, " Hi,"),
        w(1.9, 2.2, " my"),
        w(2.2, 2.6, " bill."),
    )
    turns = [turn(0.0, 1.3, 0), turn(1.5, 2.7, 1)]
    out = assign_words([stt], turns)
    assert [(u.speaker, u.start, u.end, u.text) for u in out] == [
        (0, 0.0, 1.2, "Hello, Northwind."),
        (1, 1.6, 2.6, "Hi, my bill."),
    ]
    assert [x.word for x in out[1].words] == [" Hi,", " my", " bill."]


def test_a_segment_of_one_speaker_keeps_its_stt_text_and_empty_ones_are_dropped():
    stt = segment(w(0, 0.4, " thanks"), w(0.4, 0.9, " a lot"), text="  Thanks a lot!  ")
    blank = Segment(start=1, end=2, text="  ")
    out = assign_words([blank, stt], [turn(0, 1, 3)])
    assert [(u.speaker, u.text, u.start, u.end) for u in out] == [(3, "Thanks a lot!", 0, 0.9)]


def test_words_without_leading_spaces_are_joined_with_spaces():
    stt = segment(w(0, 0.5, "yes"), w(0.5, 1, "sure"), w(2, 2.5, "no"), text="yes sure no")
    out = assign_words([stt], [turn(0, 1.1, 0), turn(1.9, 3, 1)])
    assert [u.text for u in out] == ["yes sure", "no"]


def test_the_turn_covering_more_of_the_word_wins():
    # The word [1.8, 2.4] overlaps speaker 0 by 0.2 s and speaker 1 by 0.5 s.
    turns = [turn(0.0, 2.0, 0), turn(1.9, 4.0, 1)]
    assert speaker_at(1.8, 2.4, turns) == 1
    # Shifted left it is mostly in speaker 0's turn.
    assert speaker_at(1.5, 1.95, turns) == 0


def test_a_tie_in_overlapping_speech_goes_to_the_later_turn():
    """An interjection inside a long turn: its words are inside both turns equally, and go
    to the interjecting (later) speaker; the long turn keeps the words around it."""
    stt = segment(
        w(1.0, 1.5, " So"),
        w(1.5, 2.0, " the"),
        w(2.1, 2.5, " yeah"),
        w(3.0, 3.5, " plan"),
    )
    turns = [turn(0.0, 5.0, 0), turn(2.0, 2.6, 1)]
    out = assign_words([stt], turns)
    assert [(u.speaker, u.text) for u in out] == [(0, "So the"), (1, "yeah"), (0, "plan")]
    # Turn order in the list does not matter.
    assert [u.speaker for u in assign_words([stt], list(reversed(turns)))] == [0, 1, 0]


def test_a_word_outside_every_turn_goes_to_the_nearest_turn_within_a_second():
    turns = [turn(0.0, 1.0, 0), turn(3.0, 4.0, 1)]
    assert speaker_at(1.2, 1.5, turns) == 0  # 0.2 s after speaker 0
    assert speaker_at(2.4, 2.8, turns) == 1  # 0.2 s before speaker 1
    assert speaker_at(10.0, 10.5, turns) is None  # 6 s from anything


def test_a_far_word_takes_its_segments_majority_speaker():
    # The segmenter's last turn ends at 2.0; whisper heard two more words at 5-6 s.
    stt = segment(
        w(0.0, 0.5, " one"),
        w(0.5, 1.0, " two"),
        w(1.0, 1.5, " three"),
        w(5.0, 5.5, " four"),
    )
    turns = [turn(0.0, 2.0, 1), turn(8.0, 9.0, 0)]
    out = assign_words([stt], turns)
    assert [(u.speaker, u.text) for u in out] == [(1, "one two three four")]


def test_a_segment_no_turn_is_near_goes_to_the_nearest_turn_at_any_distance():
    stt = segment(w(20.0, 20.5, " hello"))
    out = assign_words([stt], [turn(0, 1, 0), turn(10, 12, 1)])
    assert [u.speaker for u in out] == [1]
    # No turns at all (the segmenter heard nobody): everything is speaker 0.
    assert [u.speaker for u in assign_words([stt], [])] == [0]


def test_a_segment_without_word_timestamps_is_placed_by_its_midpoint():
    turns = [turn(0.0, 3.0, 0), turn(3.0, 6.0, 1)]
    early = Segment(start=0.5, end=3.5, text="mostly speaker zero")  # midpoint 2.0
    late = Segment(start=2.0, end=6.0, text="mostly speaker one")  # midpoint 4.0
    out = assign_words([late, early], turns)
    assert [(u.speaker, u.text, u.start) for u in out] == [
        (0, "mostly speaker zero", 0.5),
        (1, "mostly speaker one", 2.0),
    ]
    assert out[0].words == []


def test_zero_length_words_are_placed_by_their_timestamp():
    turns = [turn(0.0, 1.0, 0), turn(1.0, 2.0, 1)]
    assert speaker_at(0.7, 0.7, turns) == 0
    assert speaker_at(1.4, 1.4, turns) == 1
