"""Speaker embeddings: resemblyzer's GE2E voice encoder re-implemented in NumPy.

resemblyzer ships good pretrained weights but runs them on torch, librosa and webrtcvad,
which callqa does not install. The network is small (3-layer LSTM 40->256, linear 256->256,
ReLU, L2 norm over 40-band linear mel frames), so it runs here in NumPy from the same
`pretrained.pt`, read without torch. Given the same waveform, `VoiceEncoder.embed` equals
resemblyzer's `VoiceEncoder.embed_utterance` (checked against the real package in
tests/test_voice_encoder.py; scripts/make_voice_encoder_reference.py makes the reference).
"""

from __future__ import annotations

import collections
import functools
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms step
N_MELS = 40
PARTIAL_FRAMES = 160  # one network input: 1.6 s of mel frames
HIDDEN = 256
LAYERS = 3
# resemblyzer's defaults for cutting an utterance into partials (embed_utterance).
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
# What resemblyzer's preprocess_wav normalises to; the network was trained at this level.
TARGET_DBFS = -30.0

WEIGHTS_RESOURCE = "resemblyzer/pretrained.pt"
_INSTALL_HINT = (
    "install the project environment (`uv sync`); resemblyzer==0.1.4 is a dependency "
    "installed without its torch stack only for these weights"
)


class VoiceEncoderError(RuntimeError):
    """The voice encoder weights are missing or not the expected checkpoint."""


# --------------------------------------------------------------------------- weights


def weights_path() -> Path:
    """Where resemblyzer's wheel put `pretrained.pt`; raises naming the fix if absent."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError as exc:
        raise VoiceEncoderError(
            f"voice encoder weights: package resemblyzer is not installed; {_INSTALL_HINT}"
        ) from exc
    path = Path(str(dist.locate_file(WEIGHTS_RESOURCE)))
    if not path.is_file():
        raise VoiceEncoderError(f"voice encoder weights: {path} not found; {_INSTALL_HINT}")
    return path


# torch's legacy (pre-zip) serialisation: magic number, protocol, sys info, the object
# pickle, the list of storage keys, then each storage as <int64 numel><raw little-endian data>.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# The only storage type this checkpoint uses; anything else is refused.
_STORAGE_DTYPES = {"FloatStorage": np.dtype("<f4")}


@dataclass(frozen=True)
class _StorageType:
    name: str


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self, source: Path) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise VoiceEncoderError(f"{source}: storage {self.storage.key} has no data")
        if any(s < 0 for s in self.shape) or any(s < 0 for s in self.stride):
            raise VoiceEncoderError(f"{source}: negative tensor shape or stride")
        last = self.offset + sum(
            (n - 1) * s for n, s in zip(self.shape, self.stride, strict=True) if n
        )
        if self.offset < 0 or (all(self.shape) and last >= len(data)):
            raise VoiceEncoderError(f"{source}: tensor view runs past its storage")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=np.float32)  # own, native-endian copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, *rest):
    """Stand-in for torch._utils._rebuild_tensor_v2: records the view; data comes later."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) for v in ints) or len(size) != len(stride):
        raise pickle.UnpicklingError("tensor with a malformed shape or stride")
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


class _CheckpointUnpickler(pickle.Unpickler):
    """Reads the checkpoint's pickles, allowing only what a plain state dict needs.

    A pickle can run any callable it names; this one resolves three names (OrderedDict,
    the tensor rebuild function, FloatStorage) to harmless stand-ins and refuses the rest.
    """

    def __init__(self, file, source: Path) -> None:
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self.source}: refusing to load {module}.{name} (not part of a plain state dict)"
        )

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel, view metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self.source}: unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel, view = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"{self.source}: unexpected storage {pid!r:.80}")
        if not isinstance(numel, int) or numel < 0 or view is not None:
            raise pickle.UnpicklingError(f"{self.source}: unsupported storage view {pid!r:.80}")
        ref = self.storages.setdefault(key, _StorageRef(key, _STORAGE_DTYPES[kind.name], numel))
        if ref.numel != numel or ref.dtype != _STORAGE_DTYPES[kind.name]:
            raise pickle.UnpicklingError(f"{self.source}: storage {key} declared twice")
        return ref


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The `model_state` tensors of a legacy-format torch checkpoint, as float32 arrays."""
    with path.open("rb") as f:
        unpickler = _CheckpointUnpickler(f, path)
        try:
            magic = unpickler.load()
            protocol = unpickler.load()
            unpickler.load()  # sys info (endianness, type sizes)
            if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
                raise VoiceEncoderError(f"{path}: not a legacy torch checkpoint")
            checkpoint = unpickler.load()
            keys = unpickler.load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise VoiceEncoderError(f"{path}: unreadable checkpoint ({exc})") from exc
        state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict) or not isinstance(keys, list):
            raise VoiceEncoderError(f"{path}: no model_state in the checkpoint")
        wanted = {t.storage.key for t in state.values() if isinstance(t, _TensorRef)}
        for key in keys:
            ref = unpickler.storages.get(key) if isinstance(key, str) else None
            if ref is None:
                raise VoiceEncoderError(f"{path}: data for unknown storage {key!r:.40}")
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != ref.numel:
                raise VoiceEncoderError(f"{path}: storage {key} holds {numel}, not {ref.numel}")
            nbytes = numel * ref.dtype.itemsize
            if key in wanted:  # the optimiser's state is in the file too; skip it
                raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise VoiceEncoderError(f"{path}: truncated (storage {key})")
                ref.data = np.frombuffer(raw, dtype=ref.dtype)
            else:
                f.seek(nbytes, 1)
    return {
        name: tensor.materialise(path)
        for name, tensor in state.items()
        if isinstance(tensor, _TensorRef)
    }


# --------------------------------------------------------------------------- features


@functools.cache
def mel_filterbank() -> np.ndarray:
    """(40, 201) librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney scale and norm."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        linear = hz / f_sp
        log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
        return np.where(hz >= min_log_hz, log, linear)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        linear = f_sp * mel
        log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
        return np.where(mel >= min_log_mel, log, linear)

    fft_freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SAMPLE_RATE)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # Slaney: equal area per band
    return weights.astype(np.float32)


@functools.cache
def _window() -> np.ndarray:
    # scipy.signal.get_window("hann", 400, fftbins=True): the periodic Hann window.
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) float32 power mel frames, as resemblyzer's wav_to_mel_spectrogram.

    That is librosa.feature.melspectrogram with power 2 and center=True; librosa >= 0.10
    pads the centred frames with zeros (pad_mode="constant"), so there are 1 + n // 160.
    """
    y = np.asarray(samples, dtype=np.float32).reshape(-1)
    padded = np.pad(y.astype(np.float64), N_FFT // 2)
    n_frames = 1 + len(y) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    spectrum = np.fft.rfft(frames * _window(), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return (power @ mel_filterbank().T.astype(np.float64)).astype(np.float32)


def normalize_volume(samples: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise quiet audio to `target_dbfs` RMS (never lowers), as resemblyzer's preprocess_wav."""
    y = np.asarray(samples, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if len(y) else 0.0
    if rms <= 1e-8:
        return y
    gain_db = target_dbfs - 20 * np.log10(rms)
    return y if gain_db <= 0 else (y * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each 160-frame partial, as resemblyzer's compute_partial_slices.

    Partials step 1/1.3 s; a last partial less than 75 % covered by audio is dropped unless it
    is the only one. Audio shorter than a partial is zero-padded to one.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / PARTIALS_PER_S) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    starts = list(range(0, steps, frame_step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


# --------------------------------------------------------------------------- network


@dataclass(frozen=True)
class _Layer:
    w_ih_t: np.ndarray  # (in, 4H), gate columns reordered i, f, o, g
    w_hh_t: np.ndarray  # (H, 4H)
    bias: np.ndarray  # (4H,)


def _gates_reordered(matrix: np.ndarray) -> np.ndarray:
    """torch's gate order i, f, g, o -> i, f, o, g, the sigmoid rows scaled by 1/2.

    sigmoid(x) = (1 + tanh(x / 2)) / 2, so one tanh over all four gates does the work of three
    sigmoids and a tanh; halving a float is exact, so nothing is lost.
    """
    i, f, g, o = np.split(matrix, 4, axis=0)
    return np.concatenate([i * 0.5, f * 0.5, o * 0.5, g], axis=0)


class VoiceEncoder:
    """resemblyzer's pretrained GE2E voice encoder; `load()` once per process."""

    def __init__(self, state: dict[str, np.ndarray], source: str = "state dict") -> None:
        layers = []
        for n in range(LAYERS):
            try:
                w_ih, w_hh = state[f"lstm.weight_ih_l{n}"], state[f"lstm.weight_hh_l{n}"]
                bias = state[f"lstm.bias_ih_l{n}"] + state[f"lstm.bias_hh_l{n}"]
            except KeyError as exc:
                raise VoiceEncoderError(f"{source}: missing LSTM weight {exc}") from exc
            n_in = N_MELS if n == 0 else HIDDEN
            if w_ih.shape != (4 * HIDDEN, n_in) or w_hh.shape != (4 * HIDDEN, HIDDEN):
                raise VoiceEncoderError(f"{source}: LSTM layer {n} has shape {w_ih.shape}")
            layers.append(
                _Layer(
                    w_ih_t=np.ascontiguousarray(_gates_reordered(w_ih).T),
                    w_hh_t=np.ascontiguousarray(_gates_reordered(w_hh).T),
                    bias=_gates_reordered(bias[:, None])[:, 0].copy(),
                )
            )
        self.layers = layers
        try:
            self.linear_t = np.ascontiguousarray(state["linear.weight"].T)
            self.linear_bias = state["linear.bias"]
        except KeyError as exc:
            raise VoiceEncoderError(f"{source}: missing linear weight {exc}") from exc

    @classmethod
    @functools.cache
    def load(cls) -> VoiceEncoder:
        path = weights_path()
        return cls(read_state_dict(path), source=str(path))

    def forward(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel partials -> (batch, 256) L2-normalised embeddings."""
        x = np.asarray(mels, dtype=np.float32)
        batch, steps, _ = x.shape
        h = np.zeros((batch, HIDDEN), dtype=np.float32)
        for n, layer in enumerate(self.layers):
            # The input projection for every step at once; only h @ W_hh is sequential.
            gates_in = x.reshape(batch * steps, -1) @ layer.w_ih_t
            gates_in = gates_in.reshape(batch, steps, 4 * HIDDEN)
            gates_in += layer.bias
            last = n == len(self.layers) - 1
            out = None if last else np.empty((batch, steps, HIDDEN), dtype=np.float32)
            h = np.zeros((batch, HIDDEN), dtype=np.float32)
            c = np.zeros((batch, HIDDEN), dtype=np.float32)
            for t in range(steps):
                act = gates_in[:, t] + h @ layer.w_hh_t
                np.tanh(act, out=act)
                sig = act[:, : 3 * HIDDEN]
                sig *= 0.5
                sig += 0.5
                i, f, o = sig[:, :HIDDEN], sig[:, HIDDEN : 2 * HIDDEN], sig[:, 2 * HIDDEN :]
                c = f * c + i * act[:, 3 * HIDDEN :]
                h = o * np.tanh(c)
                if out is not None:
                    out[:, t] = h
            if out is not None:
                x = out
        raw = np.maximum(h @ self.linear_t + self.linear_bias, 0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-12)

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(256,) embedding of one utterance: resemblyzer's embed_utterance on the same wav."""
        return self.embed_batch([samples])[0]

    def embed_batch(self, clips: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(len(clips), 256): each clip embedded exactly as `embed` would.

        Every clip is cut into 1.6 s partials (160 frames, the last zero-padded; a clip of
        up to ~1.85 s is a single partial), the partials of all clips run through the LSTM
        `batch_size` at a time (memory stays bounded however many clips), and each clip's
        embedding is the L2-normalised mean of its partials'.
        """
        sums = np.zeros((len(clips), HIDDEN), dtype=np.float64)
        pending_mels: list[np.ndarray] = []
        pending_owner: list[int] = []

        def flush() -> None:
            embeds = self.forward(np.stack(pending_mels))
            np.add.at(sums, np.array(pending_owner), embeds)
            pending_mels.clear()
            pending_owner.clear()

        for index, clip in enumerate(clips):
            wav = np.asarray(clip, dtype=np.float32).reshape(-1)
            if len(wav) == 0:
                raise ValueError(f"voice encoder: clip {index} is empty")
            starts = partial_starts(len(wav))
            needed = (starts[-1] + PARTIAL_FRAMES) * HOP
            if needed >= len(wav):  # resemblyzer pads so the last partial is full
                wav = np.pad(wav, (0, needed - len(wav)))
            mel = mel_spectrogram(wav)
            for start in starts:
                pending_mels.append(mel[start : start + PARTIAL_FRAMES])
                pending_owner.append(index)
                if len(pending_mels) >= batch_size:
                    flush()
        if pending_mels:
            flush()
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32)
