"""Speaker roles and conversation metrics on hand-made segments with known answers."""

from __future__ import annotations

import pytest

from callqa.config.models import ChannelMap
from callqa.speech.diarization import DiarizedSegment, conversation_metrics, diarize
from callqa.speech.transcript import ChannelTranscript, Segment, Transcript


def seg(start: float, end: float, speaker: str, text: str) -> DiarizedSegment:
    return DiarizedSegment(start=start, end=end, speaker=speaker, text=text)


# A 20 s call. Times are binary fractions so the expected values are exact.
CALL = [
    seg(0, 4, "operator", "hello this is ann from northwind"),  # 6 words
    seg(4.5, 6, "operator", "how can I help"),  # 4 words, same turn
    seg(5.5, 9, "customer", "I want a cheaper plan please"),  # 6 words, cuts in 0.5 s early
    seg(8.75, 12, "operator", "we have a plan for you"),  # 6 words, 0.25 s overlap only
    seg(13, 15, "customer", "sounds good"),  # 2 words
    seg(14.5, 16, "operator", "great let me"),  # 3 words, cuts in 0.5 s early
    seg(15.875, 17, "customer", "ok"),  # 1 word, 0.125 s overlap
]


def test_talk_time_share_and_silence():
    m = conversation_metrics(CALL, 20)
    op, cu = m.roles["operator"], m.roles["customer"]
    assert op.talk_time_s == 10.25  # 4 + 1.5 + 3.25 + 1.5
    assert cu.talk_time_s == pytest.approx(6.625, abs=0.006)  # 3.5 + 2 + 1.125
    assert op.talk_share == pytest.approx(10.25 / 16.875, abs=5e-4)
    assert cu.talk_share == pytest.approx(6.625 / 16.875, abs=5e-4)
    # Somebody speaks in [0, 4], [4.5, 12] and [13, 17]: 15.5 of 20 s.
    assert m.silence_ratio == pytest.approx(4.5 / 20)
    assert m.duration_s == 20


def test_overlap_and_interruptions():
    m = conversation_metrics(CALL, 20)
    # Overlaps: 0.5 + 0.25 + 0.5 + 0.125 s; only those of at least 0.2 s are counted.
    assert m.overlap_s == pytest.approx(1.375, abs=0.006)
    assert m.overlap_count == 3
    # Interruptions need >= 0.3 s of the other party still talking: one each.
    assert m.roles["customer"].interruptions == 1
    assert m.roles["operator"].interruptions == 1
    assert m.interruption_count == 2


def test_operator_starting_over_customer_counts_for_operator():
    segments = [seg(0, 10, "customer", "a long complaint"), seg(9.5, 12, "operator", "sorry")]
    m = conversation_metrics(segments, 12)
    assert (m.roles["operator"].interruptions, m.roles["customer"].interruptions) == (1, 0)
    # 0.25 s before the customer finishes is a hand-over, not an interruption.
    handover = [seg(0, 10, "customer", "a long complaint"), seg(9.75, 12, "operator", "sorry")]
    assert conversation_metrics(handover, 12).interruption_count == 0


def test_longest_monologue_spans_consecutive_segments_of_one_speaker():
    m = conversation_metrics(CALL, 20)
    assert m.turns == 6
    assert m.longest_monologue_s == 6.0  # operator, 0 -> 6 over two segments
    assert m.longest_monologue_speaker == "operator"
    customer_rant = [
        seg(0, 1, "operator", "hi"),
        seg(1, 3, "customer", "a"),
        seg(3.5, 6, "customer", "b"),
        seg(6.5, 9.5, "customer", "c"),
        seg(10, 11, "operator", "ok"),
    ]
    m = conversation_metrics(customer_rant, 11)
    assert (m.longest_monologue_speaker, m.longest_monologue_s, m.turns) == ("customer", 8.5, 3)


def test_words_per_minute():
    m = conversation_metrics(CALL, 20)
    assert (m.roles["operator"].words, m.roles["customer"].words) == (19, 9)
    assert m.roles["operator"].words_per_minute == pytest.approx(19 / (10.25 / 60), abs=0.05)
    assert m.roles["customer"].words_per_minute == pytest.approx(9 / (6.625 / 60), abs=0.05)


def test_overlapping_segments_of_one_speaker_count_once():
    segments = [seg(0, 4, "operator", "one two"), seg(2, 6, "operator", "three four")]
    m = conversation_metrics(segments, 10)
    assert m.roles["operator"].talk_time_s == 6
    assert m.roles["operator"].talk_share == 1.0
    assert m.roles["customer"].talk_share == 0.0
    assert m.overlap_s == 0 and m.interruption_count == 0
    assert m.silence_ratio == pytest.approx(0.4)


def test_no_speech():
    m = conversation_metrics([], 30)
    assert m.silence_ratio == 1.0
    assert (m.turns, m.longest_monologue_s, m.longest_monologue_speaker) == (0, 0.0, None)
    assert all(r.talk_share == 0 and r.words_per_minute == 0 for r in m.roles.values())


# diarize (channel map, pause heuristic) -----------------------------------------------------------------------------


def _stereo() -> Transcript:
    return Transcript(
        model="tiny.en",
        duration_s=10,
        channels=[
            ChannelTranscript(
                channel=0,
                language="en",
                segments=[
                    Segment(start=0, end=2, text=" Hello, Northwind. ", channel=0),
                    Segment(start=5, end=6, text="   ", channel=0),
                    Segment(start=6, end=8, text="Anything else?", channel=0),
                ],
            ),
            ChannelTranscript(
                channel=1,
                segments=[
                    Segment(start=2.5, end=5, text="Hi, my bill is wrong.", channel=1),
                ],
            ),
        ],
    )


def test_stereo_roles_follow_the_channel_map():
    diarized = diarize(_stereo(), None, channel_map=ChannelMap())
    assert diarized.method == "stereo-channel-map"
    assert diarized.language == "en"
    assert [(s.start, s.speaker, s.channel, s.text) for s in diarized.segments] == [
        (0, "operator", 0, "Hello, Northwind."),
        (2.5, "customer", 1, "Hi, my bill is wrong."),
        (6, "operator", 0, "Anything else?"),
    ]


def test_stereo_custom_channel_map_swaps_roles():
    diarized = diarize(_stereo(), None, channel_map=ChannelMap(left="customer", right="operator"))
    assert [(s.channel, s.speaker) for s in diarized.segments] == [
        (0, "customer"),
        (1, "operator"),
        (0, "customer"),
    ]
    assert diarized.metrics.roles["customer"].talk_time_s == 4  # channel 0: 2 + 2 s
    assert diarized.metrics.roles["operator"].talk_time_s == 2.5  # channel 1
    assert diarized.roles_present() == {"operator", "customer"}


def test_mono_uses_the_pause_heuristic_and_drops_empty_segments():
    transcript = Transcript(
        model="tiny.en",
        duration_s=10,
        channels=[
            ChannelTranscript(
                channel=0,
                language="en",
                segments=[
                    Segment(start=0, end=2, text="Hello, Northwind."),
                    Segment(start=2.3, end=3, text="How can I help?"),  # 0.3 s pause: same speaker
                    Segment(start=4, end=5, text="My bill."),  # 1 s pause: other speaker
                    Segment(start=5.2, end=6, text="  "),  # empty: dropped, not a turn
                    Segment(start=6.5, end=7, text="Let me check."),  # 1.5 s after 5.0: switch back
                    Segment(start=7.1, end=8, text="Thanks."),  # 0.1 s pause: same speaker
                ],
            ),
        ],
    )
    diarized = diarize(transcript, None, backend="pause")
    assert diarized.method == "mono-pause-heuristic"
    assert [(s.text, s.speaker) for s in diarized.segments] == [
        ("Hello, Northwind.", "operator"),
        ("How can I help?", "operator"),
        ("My bill.", "customer"),
        ("Let me check.", "operator"),
        ("Thanks.", "operator"),
    ]
    assert diarized.metrics.turns == 3
    assert "[4.0] customer: My bill." in diarized.as_text()
