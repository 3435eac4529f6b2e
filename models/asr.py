"""Whisper ASR over local weights: the openai-whisper package (.pt checkpoint) or an HF directory.

Both take 1-D float waves at any rate, resample to 16 kHz, pad/trim each to Whisper's 30 s window
and decode greedily in batches of `batch_size` (temperature 0, no timestamps), so a transcript
does not depend on the batch it ran in beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.config import ASRConfig
from models.device import ModelLoadError, require_path, resolve_device
from models.tokenizer import resample

WHISPER_SR = 16000


class WhisperASR:
    """openai-whisper from a local checkpoint file ({"dims", "model_state_dict"})."""

    def __init__(self, cfg: ASRConfig):
        import whisper

        path = require_path(cfg.path, "Whisper checkpoint (.pt)", is_dir=False)
        self.device = resolve_device(cfg.device)
        try:
            self.model = whisper.load_model(str(path), device=self.device).eval()
        except Exception as e:  # noqa: BLE001 - re-raised with the file named
            raise ModelLoadError(f"Whisper: could not load {path} (expected an openai-whisper "
                                 f"checkpoint with 'dims' and 'model_state_dict'): {e}") from e
        self.language = cfg.language if self.model.is_multilingual else None
        self.batch_size = max(1, cfg.batch_size)
        self.options = whisper.DecodingOptions(
            task="transcribe", language=self.language, temperature=0.0,
            without_timestamps=True, fp16=self.device.type == "cuda",
        )

    @torch.inference_mode()
    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        import whisper

        n_mels = self.model.dims.n_mels
        out: list[str] = []
        for start in range(0, len(waves), self.batch_size):
            mels = []
            for w in waves[start:start + self.batch_size]:
                audio = whisper.pad_or_trim(torch.from_numpy(resample(w, sample_rate)))
                mels.append(whisper.log_mel_spectrogram(audio, n_mels=n_mels))
            results = whisper.decode(self.model, torch.stack(mels).to(self.device), self.options)
            out.extend(r.text.strip() for r in results)
        return out


class HFWhisperASR:
    """transformers WhisperForConditionalGeneration + WhisperProcessor from one directory."""

    def __init__(self, cfg: ASRConfig):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        path = require_path(cfg.path, "HF Whisper directory", is_dir=True)
        self.device = resolve_device(cfg.device)
        try:
            self.processor = WhisperProcessor.from_pretrained(str(path))
            self.model = WhisperForConditionalGeneration.from_pretrained(str(path))
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"HF Whisper: could not load {path}: {e}") from e
        self.model.to(self.device).eval()
        self.language = cfg.language
        self.batch_size = max(1, cfg.batch_size)

    @torch.inference_mode()
    def transcribe(self, waves: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        out: list[str] = []
        for start in range(0, len(waves), self.batch_size):
            batch = [resample(w, sample_rate) for w in waves[start:start + self.batch_size]]
            feats = self.processor(batch, sampling_rate=WHISPER_SR, return_tensors="pt")
            ids = self.model.generate(
                feats.input_features.to(self.device, self.model.dtype),
                language=self.language, task="transcribe", do_sample=False,
            )
            out.extend(t.strip() for t in
                       self.processor.batch_decode(ids, skip_special_tokens=True))
        return out
