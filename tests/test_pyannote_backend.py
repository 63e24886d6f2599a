"""The pyannote backend (callqa/speech/pyannote_backend.py).

The configuration errors, the turn mapping (on pyannote.core's real Annotation, which the
default install has) and the not-installed error run everywhere. The rest runs the real
pyannote.audio 4.x pipeline when `./dev pyannote` installed it: pyannote's gated weights
cannot be downloaded here, so a model folder in the layout of
pyannote/speaker-diarization-community-1 (config.yaml, segmentation/, embedding/, plda/) is
written from randomly initialised models of the same classes (PyanNet, WeSpeakerResNet34)
and loaded through `Pipeline.from_pretrained`, exactly as a downloaded folder is. Random
weights make the speakers meaningless, so these tests check the plumbing, not accuracy.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from callqa.speech import pyannote_backend
from callqa.speech.audio import decode_file
from callqa.speech.diarization import mono_samples
from callqa.speech.pyannote_backend import PyannoteError, PyannoteSegmenter, turns_of
from tests.paths import DEMO_CALLS

HAVE_PYANNOTE = importlib.util.find_spec("pyannote.audio") is not None
needs_pyannote = pytest.mark.skipif(
    not HAVE_PYANNOTE,
    reason="pyannote.audio is not installed (./dev pyannote adds it; docs/pyannote.md)",
)
CLIP_S = 20.0  # of call-001: enough for several segmentation windows, quick on a CPU


@pytest.fixture(autouse=True)
def _no_pyannote_env(monkeypatch):
    monkeypatch.delenv("CALLQA_PYANNOTE_MODEL", raising=False)
    monkeypatch.delenv("CALLQA_PYANNOTE_TOKEN", raising=False)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- configuration


def test_missing_model_folder_names_the_path_and_the_fixes(tmp_path):
    missing = tmp_path / "community-1"
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter(model=str(missing))
    message = one_line(exc)
    assert f"pyannote model not found at {missing}" in message
    for fix in ("CALLQA_PYANNOTE_MODEL", "CALLQA_PYANNOTE_TOKEN", "./dev pyannote"):
        assert fix in message


def test_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / "segmentation").mkdir()
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter(model=str(tmp_path))
    assert "no config.yaml" in one_line(exc)


def test_nothing_configured_says_what_to_set():
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter()
    assert one_line(exc).startswith("pyannote model not set: download pyannote/")


def test_model_and_token_come_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    monkeypatch.setenv("CALLQA_PYANNOTE_MODEL", str(tmp_path))
    assert PyannoteSegmenter().source.checkpoint == str(tmp_path.resolve())
    monkeypatch.delenv("CALLQA_PYANNOTE_MODEL")
    monkeypatch.setenv("CALLQA_PYANNOTE_TOKEN", "hf_from_env")
    source = PyannoteSegmenter().source
    assert (source.checkpoint, source.local) == ("pyannote/speaker-diarization-community-1", False)


def test_a_hub_id_needs_a_hugging_face_token_which_never_shows():
    # Without a token a hub id is only a path that does not exist.
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter(model="acme/diarization")
    assert "not found at acme/diarization" in one_line(exc)
    # pyannote gives other tokens to its paid API instead of the hub.
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter(model="acme/diarization", token="sk-live-secret")
    message = one_line(exc)
    assert "not a Hugging Face access token" in message
    assert "sk-live-secret" not in message


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"num_speakers": 0}, "num_speakers=0"),
        ({"max_speakers": 2.5}, "max_speakers=2.5"),
        ({"min_speakers": True}, "min_speakers=True"),
        ({"threads": 0}, "threads=0"),
        ({"min_speakers": 3, "max_speakers": 2}, "min_speakers=3 is above max_speakers=2"),
    ],
)
def test_speaker_counts_are_validated(tmp_path, kwargs, problem):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    with pytest.raises(PyannoteError) as exc:
        PyannoteSegmenter(model=str(tmp_path), **kwargs)
    assert problem in one_line(exc)


def test_gated_and_offline_errors_are_one_line_without_the_token():
    import httpx
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    source = pyannote_backend.ModelSource("pyannote/speaker-diarization-community-1", False)
    url = "https://huggingface.co/pyannote/speaker-diarization-community-1/resolve/main/config.yaml"
    response = httpx.Response(403, request=httpx.Request("GET", url))
    gated = pyannote_backend._load_error(
        source,
        GatedRepoError("Access restricted (token hf_secret)", response=response),
        "hf_secret",
    )
    assert gated.startswith("pyannote model pyannote/speaker-diarization-community-1 is gated")
    assert "https://hf.co/pyannote/speaker-diarization-community-1" in gated
    offline = pyannote_backend._load_error(source, LocalEntryNotFoundError("no"), "hf_secret")
    assert "could not be downloaded (offline?)" in offline
    other = pyannote_backend._load_error(source, ValueError("bad hf_secret\nyaml"), "hf_secret")
    assert "ValueError: bad *** yaml" in other
    for message in (gated, offline, other):
        assert "hf_secret" not in message and "\n" not in message


# --------------------------------------------------------------------------- turn mapping


def test_turns_are_clipped_sorted_and_numbered_by_first_appearance():
    annotation = Annotation()
    annotation[Segment(4.0, 6.5)] = "SPEAKER_00"
    annotation[Segment(-0.02, 2.0)] = "SPEAKER_01"
    annotation[Segment(2.5, 4.2)] = "SPEAKER_02"
    annotation[Segment(9.5, 10.7)] = "SPEAKER_01"  # windows are padded past the end
    annotation[Segment(10.2, 10.6)] = "SPEAKER_00"  # entirely after the end: dropped
    turns = turns_of(annotation, duration=10.0)
    assert [(t.start, t.end, t.speaker) for t in turns] == [
        (0.0, 2.0, 0),
        (2.5, 4.2, 1),
        (4.0, 6.5, 2),
        (9.5, 10.0, 0),
    ]


def test_empty_audio_has_no_turns_and_loads_nothing(tmp_path):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    result = PyannoteSegmenter(model=str(tmp_path)).segment(np.zeros(0, dtype=np.float32))
    assert (result.turns, result.speakers, result.method) == ([], 0, "pyannote")


def test_stereo_samples_are_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    with pytest.raises(PyannoteError, match=r"mono samples, got shape \(2, 16000\)"):
        PyannoteSegmenter(model=str(tmp_path)).segment(np.zeros((2, 16000), np.float32))


def test_not_installed_is_one_line_naming_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "config.yaml").write_text("pipeline: {}\n")
    # None in sys.modules makes `import pyannote.audio` fail as if it were not installed
    # (and it is simply absent where ./dev pyannote was not run).
    monkeypatch.setitem(sys.modules, "pyannote.audio", None)
    monkeypatch.setattr(pyannote_backend, "_pipelines", {})
    segmenter = PyannoteSegmenter(model=str(tmp_path))
    with pytest.raises(PyannoteError) as exc:
        segmenter.segment(np.zeros(16000, dtype=np.float32))
    message = one_line(exc)
    assert message.startswith("pyannote.audio is not installed or does not import")
    assert message.endswith("install with ./dev pyannote (docs/pyannote.md)")


# --------------------------------------------------------------------------- real pipeline

COMMUNITY_LIKE_CONFIG = """\
version: 4.0.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: VBxClustering
    embedding_exclude_overlap: true
    segmentation_step: 0.5
params:
  segmentation:
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def _save(model, path) -> None:
    """A checkpoint as pyannote writes one (its wespeaker converter does the same)."""
    import lightning
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # architecture, specifications, pyannote version
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A community-1 shaped pipeline folder with random weights (about 27 MB)."""
    pyannote_backend._import_pyannote()  # telemetry off, import warnings quiet
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    root = tmp_path_factory.mktemp("pyannote-random")
    torch.manual_seed(0)
    segmentation = PyanNet(
        lstm={"hidden_size": 32, "num_layers": 1}, linear={"hidden_size": 32, "num_layers": 1}
    )
    # Powerset segmentation as in community-1: 3 speakers per window, 2 at a time at most.
    segmentation.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=5.0,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    segmentation.build()
    with torch.no_grad():  # random weights would mostly say "nobody speaks"
        segmentation.classifier.bias[0] = -10.0
    _save(segmentation, root / "segmentation" / "pytorch_model.bin")

    embedding = WeSpeakerResNet34()
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    _save(embedding, root / "embedding" / "pytorch_model.bin")

    # VBx's PLDA: an LDA projection of the 256-d embeddings and a well-conditioned PLDA.
    rng = np.random.default_rng(0)
    lda = 32
    (root / "plda").mkdir()
    np.savez(
        root / "plda" / "xvec_transform.npz",
        mean1=np.zeros(embedding.dimension),
        mean2=np.zeros(lda),
        lda=rng.standard_normal((embedding.dimension, lda)),
    )
    np.savez(
        root / "plda" / "plda.npz",
        mu=np.zeros(lda),
        tr=np.eye(lda) + 0.01 * rng.standard_normal((lda, lda)),
        psi=np.linspace(2.0, 0.5, lda),
    )
    (root / "config.yaml").write_text(COMMUNITY_LIKE_CONFIG)
    return root


@pytest.fixture(scope="module")
def call_clip() -> np.ndarray:
    """The first 20 s of a real demo call, both channels mixed to one (a mono recording)."""
    audio = decode_file(DEMO_CALLS / "call-001.flac")
    return mono_samples(audio)[: int(CLIP_S * 16_000)]


def assert_plumbing(result, duration: float) -> None:
    assert result.method == "pyannote"
    assert result.turns, "the random model marks speech everywhere"
    starts = [t.start for t in result.turns]
    assert starts == sorted(starts)
    assert all(0.0 <= t.start < t.end <= duration for t in result.turns)
    ids = [t.speaker for t in result.turns]
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(len(first_seen)))  # 0, 1, ... in order of appearance
    assert result.speakers == len(first_seen)
    json.dumps(result.details)  # goes into asset metadata


@needs_pyannote
@pytest.mark.slow
def test_real_pipeline_on_a_real_recording(random_model, call_clip):
    segmenter = PyannoteSegmenter(model=str(random_model), threads=1)
    result = segmenter.segment(call_clip)
    assert_plumbing(result, CLIP_S)
    assert result.details["model"] == str(random_model.resolve())
    assert result.details["turns_from"] == "exclusive"
    # Exclusive turns: one speaker at a time.
    for before, after in zip(result.turns, result.turns[1:], strict=False):
        assert after.start >= before.end
    # The pipeline is loaded once per process, not per call.
    assert segmenter.load() is PyannoteSegmenter(model=str(random_model)).load()
    assert pyannote_backend.os.environ["PYANNOTE_METRICS_ENABLED"] == "false"
    import torch

    assert torch.get_num_threads() == 1


@needs_pyannote
@pytest.mark.slow
@pytest.mark.parametrize(
    ("counts", "expected"),
    [({"num_speakers": 2}, 2), ({"min_speakers": 3, "max_speakers": 3}, 3)],
)
def test_speaker_counts_reach_the_pipeline(random_model, call_clip, counts, expected):
    segmenter = PyannoteSegmenter(model=str(random_model), exclusive=False, threads=1, **counts)
    result = segmenter.segment(call_clip)
    assert_plumbing(result, CLIP_S)
    assert result.speakers == expected
    assert result.details["turns_from"] == "overlapping"
    assert {k: result.details[k] for k in counts} == counts


@needs_pyannote
@pytest.mark.slow  # imports pyannote.audio (about 16 s)
def test_hub_download_failure_is_one_line_without_the_token(monkeypatch):
    import huggingface_hub.constants

    # The network edge: the hub client's offline switch, so nothing is fetched.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    segmenter = PyannoteSegmenter(model="callqa-tests/no-such-pipeline", token="hf_notreal123")
    with pytest.raises(PyannoteError) as exc:
        segmenter.segment(np.zeros(16000, dtype=np.float32))
    message = one_line(exc)
    assert message.startswith("pyannote model callqa-tests/no-such-pipeline could not be")
    assert "hf_notreal123" not in message
