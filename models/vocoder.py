"""`UnitHiFiGAN`: the unit HiFi-GAN of the speech-resynthesis / textlesslib family, in plain torch.

Generator: unit embedding (num_embeddings x embedding_dim) [+ speaker embedding] [-> duration
predictor, repeating each unit] -> conv_pre -> (leaky ReLU, transposed conv, mean of resblocks) per
upsampling stage -> conv_post -> tanh. One unit frame becomes prod(upsample_rates) samples.

Published checkpoints are a torch .pt with a "generator" state dict whose convs are weight-normed
(`weight_g`/`weight_v`); we fold them into plain weights at load (what remove_weight_norm does at
inference), so the module itself has no weight norm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.config import VocoderConfig
from models.device import ModelLoadError, require_path, resolve_device

LRELU_SLOPE = 0.1


def get_padding(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Per dilation: lrelu -> dilated conv -> lrelu -> conv, plus the residual."""

    def __init__(self, ch: int, k: int, dilations: Sequence[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(ch, ch, k, 1, dilation=d, padding=get_padding(k, d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(ch, ch, k, 1, dilation=1, padding=get_padding(k)) for _ in dilations
        )

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Per dilation: lrelu -> dilated conv, plus the residual (the lighter HiFi-GAN V3 block)."""

    def __init__(self, ch: int, k: int, dilations: Sequence[int]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(ch, ch, k, 1, dilation=d, padding=get_padding(k, d)) for d in dilations
        )

    def forward(self, x):
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class VariancePredictor(nn.Module):
    """Log-duration per unit: two (conv, ReLU, LayerNorm) blocks and a linear projection."""

    def __init__(self, encoder_embed_dim: int, var_pred_hidden_dim: int,
                 var_pred_kernel_size: int, var_pred_dropout: float = 0.0, **_):
        super().__init__()
        k = var_pred_kernel_size
        self.conv1 = nn.Sequential(
            nn.Conv1d(encoder_embed_dim, var_pred_hidden_dim, k, padding=(k - 1) // 2), nn.ReLU()
        )
        self.ln1 = nn.LayerNorm(var_pred_hidden_dim)
        self.conv2 = nn.Sequential(
            nn.Conv1d(var_pred_hidden_dim, var_pred_hidden_dim, k, padding=1), nn.ReLU()
        )
        self.ln2 = nn.LayerNorm(var_pred_hidden_dim)
        self.proj = nn.Linear(var_pred_hidden_dim, 1)

    def forward(self, x):  # (B, T, C) -> (B, T)
        x = self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2))
        x = self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return self.proj(x).squeeze(-1)


class CodeGenerator(nn.Module):
    """The unit-to-waveform generator; parameter names match the published checkpoints."""

    def __init__(self, h: dict):
        super().__init__()
        if h.get("f0"):
            raise ValueError("f0-conditioned vocoders are not supported (set f0 false)")
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.dict = nn.Embedding(h["num_embeddings"], h["embedding_dim"])
        self.multispkr = bool(h.get("multispkr"))
        if self.multispkr:
            self.spkr = nn.Embedding(h.get("num_speakers", 200), h["embedding_dim"])
        self.dur_predictor = None
        if h.get("dur_predictor_params"):
            self.dur_predictor = VariancePredictor(**h["dur_predictor_params"])
        ch = h["upsample_initial_channel"]
        self.conv_pre = nn.Conv1d(h.get("model_in_dim", 128), ch, 7, 1, padding=3)
        block = ResBlock1 if str(h["resblock"]) == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"],
                                       strict=True)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))
            for rk, rd in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"],
                              strict=True):
                self.resblocks.append(block(c_out, rk, rd))
        self.conv_post = nn.Conv1d(c_out, 1, 7, 1, padding=3)
        self.hop = math.prod(h["upsample_rates"])

    def embed(self, code: torch.Tensor, dur_prediction: bool, speaker: int = 0) -> torch.Tensor:
        """(1, T) unit ids -> (1, C, frames), repeating units by predicted durations if asked."""
        x = self.dict(code).transpose(1, 2)
        if dur_prediction and self.dur_predictor is not None:
            log_dur = self.dur_predictor(x.transpose(1, 2))
            dur = torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)
            x = torch.repeat_interleave(x, dur.view(-1), dim=2)
        if self.multispkr:
            spk = self.spkr(torch.tensor([speaker], device=x.device))[:, :, None]
            x = torch.cat([x, spk.expand(-1, -1, x.shape[-1])], dim=1)
        return x

    def forward(self, code: torch.Tensor, dur_prediction: bool = False, speaker: int = 0):
        x = self.conv_pre(self.embed(code, dur_prediction, speaker))
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(b(x) for b in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)  # (1, samples)


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace `X.weight_g`/`X.weight_v` (or torch's parametrization keys) by `X.weight`:
    w = g * v / ||v||, the norm taken over every dim but the first (weight_norm's dim=0)."""
    out: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        for g_suffix, v_suffix in ((".weight_g", ".weight_v"),
                                   (".parametrizations.weight.original0",
                                    ".parametrizations.weight.original1")):
            if k.endswith(g_suffix):
                pairs.setdefault(k[: -len(g_suffix)], {})["g"] = v
                break
            if k.endswith(v_suffix):
                pairs.setdefault(k[: -len(v_suffix)], {})["v"] = v
                break
        else:
            out[k] = v
    for name, gv in pairs.items():
        if set(gv) != {"g", "v"}:
            raise ModelLoadError(f"vocoder: weight norm of {name} is missing its g or v part")
        v = gv["v"].float()
        norm = v.norm(dim=tuple(range(1, v.dim())), keepdim=True)
        out[f"{name}.weight"] = gv["g"].float() * v / norm
    return out


class UnitHiFiGAN:
    """Vocoder over a speech-resynthesis checkpoint (.pt with "generator") and its JSON config."""

    def __init__(self, cfg: VocoderConfig):
        ckpt = require_path(cfg.checkpoint, "vocoder checkpoint", is_dir=False)
        conf = require_path(cfg.config_path, "vocoder JSON config", is_dir=False)
        try:
            self.h = json.loads(conf.read_text())
        except ValueError as e:
            raise ModelLoadError(f"vocoder: {conf} is not valid JSON: {e}") from e
        needed = ["upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                  "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes",
                  "num_embeddings", "embedding_dim"]
        missing = [k for k in needed if k not in self.h]
        if missing:
            raise ModelLoadError(f"vocoder: {conf} lacks {missing}")
        self.device = resolve_device(cfg.device)
        try:
            self.generator = CodeGenerator(self.h)
        except ValueError as e:
            raise ModelLoadError(f"vocoder: {conf}: {e}") from e
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "generator" not in state:
            raise ModelLoadError(f"vocoder: {ckpt} has no 'generator' state dict (keys: "
                                 f"{list(state)[:8] if isinstance(state, dict) else type(state)})")
        try:
            self.generator.load_state_dict(fold_weight_norm(state["generator"]))
        except RuntimeError as e:
            raise ModelLoadError(f"vocoder: {ckpt} does not match the generator described by "
                                 f"{conf}: {e}") from e
        self.generator.to(self.device).eval()
        has_predictor = self.generator.dur_predictor is not None
        if cfg.dur_prediction and not has_predictor:
            raise ModelLoadError(f"vocoder: [models.vocoder].dur_prediction is true but {conf} "
                                 "has no dur_predictor_params")
        self.dur_prediction = has_predictor if cfg.dur_prediction is None else cfg.dur_prediction
        self.sample_rate = int(self.h.get("sampling_rate", 16000))  # as textlesslib reads it
        self.hop = self.generator.hop
        self.num_units = int(self.h["num_embeddings"])

    @torch.inference_mode()
    def decode(self, units: Sequence[int]) -> np.ndarray:
        """float32 wave: len(units) * hop samples, or sum(predicted durations) * hop."""
        if not len(units):
            return np.zeros(0, dtype=np.float32)
        bad = [u for u in units if not 0 <= int(u) < self.num_units]
        if bad:
            raise ValueError(f"units {bad[:5]} outside 0..{self.num_units - 1}")
        code = torch.tensor([list(units)], dtype=torch.long, device=self.device)
        wave = self.generator(code, dur_prediction=self.dur_prediction)
        return wave[0].float().cpu().numpy()
