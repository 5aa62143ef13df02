"""Export a trained model folder to ONNX, for :mod:`hieradist_lobes.onnx_runtime`.

Command::

    python -m hieradist_lobes.onnx_export results/synth/cif/model results/synth/cif/onnx
    python -m hieradist_lobes.onnx_export results/synth/student_average/model results/synth/student_average/onnx

A CIF model folder (:class:`~hieradist_lobes.inference.CIFASR`) becomes two graphs:

* ``encoder.onnx``: power spectrogram → filterbank → normalisation → encoder →
  CIF weights: ``(spectrogram [batch, frames, n_fft/2+1], lengths [batch]) →
  (encoded [batch, T, d], alphas [batch, T])``, dynamic batch and time;
* ``decoder_step.onnx``: one decoder step with its key/value cache:
  ``(previous_token [batch], fired [batch, d], previous_fired [batch, d],
  position [1], past_keys, past_values [layers, batch, heads, t, d_head]) →
  (logits [batch, vocabulary], keys, values [layers, batch, heads, t+1, d_head])``.

Integrate-and-fire runs beside them in NumPy (a loop over a few dozen frames
per second of audio, not a graph).  A CTC/attention student's folder
(``EncoderDecoderASR``) becomes ``encoder.onnx``: ``(spectrogram, lengths) →
ctc_logprobs [batch, T, vocabulary]``, decoded greedily (CTC).

The STFT stays outside the graphs (NumPy in the runtime, with the model's own
window, saved in ``stft_window.npy``): everything after it, the filterbank and
the normalisation included, is the model's own code, traced.
``onnx_model.json`` holds what the runtime needs: the labels and their unit,
the special indices, the STFT's sizes, the CIF threshold, and the decoder's
shape.  The export checks each graph against PyTorch on the folder's example
and a cut of it (or noise), alone and as a padded batch, before it writes anything.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from hieradist_lobes.cif_decoder import cached_layer_step, position_encodings
from hieradist_lobes.files import staged_folder, write_json
from hieradist_lobes.onnx_runtime import ONNX_MODEL_FILE, run_graph

__all__ = ["export_onnx_folder", "ONNX_MODEL_FILE", "main"]

OPSET = 17
#: How far the ONNX graphs may be from PyTorch on the check (encoder outputs, weights, logits).
TOLERANCE = 1e-4


class EncoderGraph(torch.nn.Module):
    """Power spectrogram → the model's filterbank, normalisation and encoder, then its CIF weights
    (:class:`~hieradist_lobes.models.CIFModel`: ``(encoded, alphas)``) or its CTC head
    (:class:`~hieradist_lobes.models.CTCAttentionModel`: ``ctc_logprobs``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        from hieradist_lobes.models import CIFModel

        self.model = model
        self.is_cif = isinstance(model, CIFModel)

    def forward(self, spectrogram: torch.Tensor, lengths: torch.Tensor):
        feats = self.model.compute_features.compute_fbanks(spectrogram)
        feats = self.model.normalize(feats, lengths)
        if self.is_cif:
            return self.model.cif.weigh(self.model.enc(feats, lengths), lengths)
        return torch.log_softmax(self.model.ctc_lin(self.model.enc(feats)), dim=-1)


class DecoderStepGraph(torch.nn.Module):
    """:meth:`~hieradist_lobes.cif_decoder.CIFDecoder.step` with the cache as stacked tensors and the
    position as an input (the same layer code: ``layer_inputs``, ``cached_layer_step``, ``read_out``)."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, previous_token: torch.Tensor, fired: torch.Tensor, previous_fired: torch.Tensor,
                position: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        decoder = self.decoder
        x = decoder.layer_inputs(previous_token[:, None], previous_fired[:, None],
                                 position_encodings(position, decoder.d_model))
        keys, values = [], []
        for index, layer in enumerate(decoder.layers):
            x, layer_keys, layer_values = cached_layer_step(layer, x, past_keys[index], past_values[index])
            keys.append(layer_keys)
            values.append(layer_values)
        logits = decoder.read_out(x, fired[:, None]).logits[:, 0]
        return logits, torch.stack(keys), torch.stack(values)


def power_spectrogram_torch(stft: torch.nn.Module, wavs: torch.Tensor) -> torch.Tensor:
    """The model's STFT and ``|X|²``: the graphs' input, as the Fbank computes it before its filterbank."""
    from speechbrain.processing.features import spectral_magnitude

    return spectral_magnitude(stft(wavs))


def _stft_window(stft: torch.nn.Module) -> np.ndarray:
    """The STFT's window as ``torch.stft`` applies it: zero-padded to ``n_fft``, centred."""
    window = stft.window.detach().cpu().float().numpy()
    left = (int(stft.n_fft) - window.shape[0]) // 2
    return np.pad(window, (left, int(stft.n_fft) - window.shape[0] - left)).astype(np.float32)


def _export(module: torch.nn.Module, args: tuple, path: str, input_names: List[str], output_names: List[str],
            dynamic_axes: Dict[str, Dict[int, str]]) -> None:
    import warnings

    # The TorchScript exporter: the models' shapes all follow from the inputs', which it traces as such
    # (checked by _check on a second length). Its tracer warnings are about Python values it cannot see
    # change; the check is what tells.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _check(path: str, inputs: Dict[str, np.ndarray], expected: Sequence[torch.Tensor], names: Sequence[str]) -> None:
    """Run the graph in onnxruntime on ``inputs``; every output within :data:`TOLERANCE` of PyTorch's."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = run_graph(session, inputs)
    for name, got, want in zip(names, outputs, expected):
        want = want.detach().cpu().numpy()
        if got.shape != want.shape or not np.allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE):
            difference = float(np.abs(got - want).max()) if got.shape == want.shape else "shape"
            raise RuntimeError(f"{os.path.basename(path)}: output {name} differs from PyTorch ({difference}); "
                               "the export is not faithful: please report it with the model folder's hyperparams.yaml")


def _check_signals(folder: str, sample_rate: int) -> List[torch.Tensor]:
    """Two recordings of different lengths to check the graphs on: the folder's example and a cut of it
    (or noise, when the folder has no example)."""
    example = os.path.join(folder, "example.wav")
    if os.path.isfile(example):
        import soundfile

        signal, rate = soundfile.read(example, dtype="float32", always_2d=True)
        if rate == sample_rate:
            signal = torch.from_numpy(signal.mean(axis=1))
            return [signal, signal[: max(sample_rate // 2, signal.shape[0] * 2 // 3)]]
    generator = torch.Generator().manual_seed(0)
    return [0.1 * torch.randn(sample_rate * 2, generator=generator),
            0.1 * torch.randn(sample_rate, generator=generator)]


def export_onnx_folder(model_folder: str, output_folder: str) -> str:
    """Export a trained model folder (CIF or CTC/attention) to ``output_folder`` (replaced atomically).

    Returns
    -------
    str
        ``output_folder``.
    """
    from hieradist_lobes.export import ModelFolderError, verify_model_folder

    verify_model_folder(model_folder, ["hyperparams.yaml"])
    with open(os.path.join(model_folder, "hyperparams.yaml"), encoding="utf-8") as handle:
        text = handle.read()
    if "hieradist_lobes.models.CIFModel" in text:
        return _export_cif(model_folder, output_folder)
    if "hieradist_lobes.models.CTCAttentionModel" in text:
        return _export_ctc(model_folder, output_folder)
    raise ModelFolderError(f"{model_folder}: neither a CIF nor a CTC/attention model folder of this project "
                           "(its hyperparams.yaml defines no CIFModel or CTCAttentionModel)")


def _features_config(model: torch.nn.Module, sample_rate: int) -> Dict[str, object]:
    features = model.compute_features
    if getattr(features, "deltas", False) or getattr(features, "context", False):
        raise ValueError("features with deltas or a context window are not exported (the graph starts after "
                         "the STFT and the filterbank)")
    stft = features.compute_STFT
    return {"sample_rate": sample_rate, "n_fft": int(stft.n_fft), "hop_length": int(stft.hop_length)}


def _export_cif(model_folder: str, output_folder: str) -> str:
    from hieradist_lobes.inference import CIFASR

    asr = CIFASR.from_hparams(source=model_folder, savedir=model_folder)
    model = asr.mods.model.eval()
    decoder = model.dec
    layers, heads = len(decoder.layers), decoder.layers[0].self_attn.num_heads
    config = {"system": "CIF",
              "cif": {"threshold": float(model.cif.threshold), "fire_eps": float(model.cif.fire_eps),
                      "tail_threshold": None if model.cif.tail_threshold is None else float(model.cif.tail_threshold)},
              "decoder": {"layers": layers, "heads": heads, "head_size": decoder.d_model // heads}}

    def decoder_step(staging: str) -> None:
        path = os.path.join(staging, "decoder_step.onnx")
        step = DecoderStepGraph(decoder).eval()
        generator = torch.Generator().manual_seed(0)
        dim, head_size = int(model.cif.input_size), decoder.d_model // heads
        cache = [torch.randn(layers, 1, heads, 2, head_size, generator=generator) for _ in range(2)]
        args = (torch.tensor([asr.tokenizer.get_bos_index()]), torch.randn(1, dim, generator=generator),
                torch.randn(1, dim, generator=generator), torch.tensor([2.0]), *cache)
        names = ["previous_token", "fired", "previous_fired", "position", "past_keys", "past_values"]
        _export(step, args, path, names, ["logits", "keys", "values"],
                {"previous_token": {0: "batch"}, "fired": {0: "batch"}, "previous_fired": {0: "batch"},
                 "past_keys": {1: "batch", 3: "steps"}, "past_values": {1: "batch", 3: "steps"},
                 "logits": {0: "batch"}, "keys": {1: "batch", 3: "next_steps"},
                 "values": {1: "batch", 3: "next_steps"}})
        for steps in (0, 5):  # the first step (an empty cache) and a later one
            cache = [torch.randn(layers, 1, heads, steps, head_size, generator=generator) for _ in range(2)]
            check_args = (*args[:3], torch.tensor([float(steps)]), *cache)
            _check(path, {name: value.numpy() for name, value in zip(names, check_args)}, step(*check_args),
                   ["logits", "keys", "values"])

    return _write_export(model_folder, output_folder, model, asr.tokenizer, int(asr.hparams.sample_rate), config,
                         ["encoded", "alphas"], decoder_step)


def _export_ctc(model_folder: str, output_folder: str) -> str:
    from speechbrain.inference.ASR import EncoderDecoderASR

    asr = EncoderDecoderASR.from_hparams(source=model_folder, savedir=model_folder)
    return _write_export(model_folder, output_folder, asr.mods.model.eval(), asr.tokenizer,
                         int(asr.hparams.sample_rate), {"system": "CTC"}, ["ctc_logprobs"])


def _write_export(model_folder: str, output_folder: str, model: torch.nn.Module, tokenizer, sample_rate: int,
                  config: Dict[str, object], output_names: List[str],
                  more_graphs: Optional[Callable[[str], None]] = None) -> str:
    """The encoder graph (checked on two recordings, alone and as a padded batch), the STFT window,
    ``onnx_model.json`` and, by ``more_graphs(staging)``, any other graph: all in ``output_folder``,
    replaced only when complete."""
    config = {**config, "unit": tokenizer.unit, "labels": tokenizer.labels(),
              "blank_index": tokenizer.get_blank_index(), "bos_index": tokenizer.get_bos_index(),
              "eos_index": tokenizer.get_eos_index(), "features": _features_config(model, sample_rate)}
    stft = model.compute_features.compute_STFT
    spectrograms = [power_spectrogram_torch(stft, signal[None]) for signal in _check_signals(model_folder, sample_rate)]
    ones = torch.ones(1)
    with staged_folder(output_folder) as staging, torch.no_grad():
        path = os.path.join(staging, "encoder.onnx")
        graph = EncoderGraph(model).eval()
        _export(graph, (spectrograms[0], ones), path, ["spectrogram", "lengths"], output_names,
                {"spectrogram": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                 **{name: {0: "batch", 1: "encoder_frames"} for name in output_names}})
        # Each recording alone (the second length shows that the time axis is not frozen), then both
        # as a padded batch (the padding masks are computed in the graph, not frozen by the trace).
        frames = [spectrogram.shape[1] for spectrogram in spectrograms]
        padded = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, max(frames) - s.shape[1])) for s in spectrograms])
        relative = torch.tensor([count / max(frames) for count in frames])
        for spectrogram, lengths in [(s, ones) for s in spectrograms] + [(padded, relative)]:
            outputs = graph(spectrogram, lengths)
            _check(path, {"spectrogram": spectrogram.numpy(), "lengths": lengths.numpy()},
                   outputs if isinstance(outputs, tuple) else [outputs], output_names)
        if more_graphs is not None:
            more_graphs(staging)
        np.save(os.path.join(staging, "stft_window.npy"), _stft_window(stft))
        write_json(os.path.join(staging, ONNX_MODEL_FILE), config, indent=1, ensure_ascii=False)
    return output_folder


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hieradist_lobes.onnx_export",
        description="Export a trained model folder (CIF, or a CTC/attention student or teacher) to ONNX; "
                    "decode it with hieradist_lobes.onnx_runtime.load_onnx_folder(output_folder).")
    parser.add_argument("model_folder", help="the folder a training exported (hyperparams.yaml, model.ckpt, ...)")
    parser.add_argument("output_folder", help="where the ONNX folder goes (replaced if it exists)")
    arguments = parser.parse_args(argv)
    if os.path.abspath(arguments.output_folder) == os.path.abspath(arguments.model_folder):
        parser.error("the output folder must not be the model folder (it would be replaced)")
    folder = export_onnx_folder(arguments.model_folder, arguments.output_folder)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    from hieradist_lobes.cli import run_command

    sys.exit(run_command(main))
