"""The speech stop's Config, the clips' constants and the word error rate floors its checks use; every part of the
stop imports them from here."""

from __future__ import annotations

from dataclasses import dataclass

from tour.core.config import FLOAT_DTYPES, BaseConfig, arg
from tour.core.errors import TourError

NAME = "speech"
RATE = 16_000  # Whisper hears 16 kHz mono
CLIP_TEXT = "Every audio model starts by turning sound into features like these."  # the shipped clip's words
SENTENCES = ["The quick brown fox jumps over the lazy dog. It is a sunny day in the park.",
             "Please call Stella and ask her to bring these things with her from the store.",
             "The weather today is cold and windy, so bring a warm coat."]
WINDOW_S = 30.0  # Whisper hears 30 s at a time: longer audio is long-form
PICTURE_S = 8.0  # the word picture shows at most this much audio (~20 words): more would overlap
# Word error rates tiny.en reaches on the tour's own clips with beam search (5 beams): 0.02 measured over the shipped
# clip and the espeak-ng sentences (greedy: 0.18); long-form, chunked: 0.10-0.21 with the 30 s window edges.
WER_FLOOR = 0.10
LONG_WER_FLOOR = 0.30
FLOOR_BEAMS = 5  # the floors were measured with this beam width; fewer beams mishear more
RANDOM_TOKENS = 16  # tokens per transcript with random weights (tour.core.assets' stand-in), which never say done


@dataclass
class Config(BaseConfig):
    audio: list[str] = arg([], "your own audio files (wav, flac, ogg, mp3; any rate and channels); empty: the tour's "
                               "clip plus espeak-ng sentences")
    text: list[str] = arg([], "the reference transcript of each --audio file (its known words), for a word error "
                              "rate (optional)")
    sentences: list[str] = arg(SENTENCES, "sentences espeak-ng speaks for the default clips (when installed)",
                              nonblank=True)
    # 5 is the pipeline's own default here; greedy (1) is twice as fast but tiny.en then mishears more
    num_beams: int = arg(5, "beam search width (1 = greedy, like faster-whisper's beam_size=1)", min=1, max=10)
    batch_size: int = arg(4, "clips per forward pass in the batched run", min=1, max=64)
    long_seconds: float = arg(35.0, "length of the long-form clip made from the tour's clips, when your --audio "
                                    "is not over 30 s in all (over 30 s: chunked)",
                              min=0.0, max=600.0, quick=31.0)
    repeats: int = arg(3, "timed runs for the real-time factor; the median counts", min=1, quick=1)
    # auto, as measured on an AMX-BF16 CPU: bf16 kept every check (WER 0.018 on the tour's 4 clips, as fp32;
    # long-form 0.121 vs fp32's 0.131; batched transcripts identical)
    dtype: str = arg("auto", "Whisper's dtype; auto: bf16 where the hardware has it, fp16 on other GPUs, else fp32",
                     choices=FLOAT_DTYPES)

    def validate(self) -> None:
        if self.text and len(self.text) != len(self.audio):
            raise TourError(f"--text gave {len(self.text)} texts for {len(self.audio)} --audio files; "
                            "give one text per file, or none")
