"""Text → semantic codes: the one pipeline object the CLI, HTTP API and web UI share.

``SemanticGenerator.generate`` follows the reference ``generate_long``: the text is split into
segments, each segment is generated with the reference prompts and the recent segments (with their
generated codes) as context, and each yields a :class:`Segment` of VQ indices. One call = one sample.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from speechlm.errors import InputError
from speechlm.params import SynthesisParams, check_text
from speechlm.stages.engine import Engine, GenerationCancelled
from speechlm.stages.sampling import SamplingParams
from speechlm.models.text2semantic.llama import BaseTransformer
from speechlm.models.text2semantic.loading import load_text2semantic
from speechlm.text.prompt import CODE_OFFSET, CODEBOOK_EOS, check_prompt_codes, encode_prompt
from speechlm.text.split import split_text
from speechlm.text.tokenizer import FishTokenizer, build_tokenizer

log = logging.getLogger(__name__)

CONTEXT_RESERVE = 1024  # tokens kept free for generation when choosing past segments (reference value)


__all__ = ["GenerationCancelled", "Segment", "SemanticGenerator", "estimate_tokens", "select_context"]

TOKENS_PER_CHAR = 1.4  # Latin-script text: ~15 characters and ~21.5 code columns per second of speech
TOKENS_PER_WIDE_CHAR = 4.5  # CJK characters: ~5 per second


def estimate_tokens(text: str) -> int:
    """Rough number of code columns the model generates for ``text`` (sizes the progress bar)."""
    wide = sum(1 for ch in text if ord(ch) >= 0x2E80)
    return max(1, round(wide * TOKENS_PER_WIDE_CHAR + (len(text) - wide) * TOKENS_PER_CHAR))


@dataclass
class Segment:
    """One generated segment.

    Attributes:
        codes: (num_codebooks, T) int64 VQ indices (``generate_long`` codes: the last two columns dropped).
        index: segment number (0-based); ``num_segments``: how many this text has.
        text: the segment's cleaned text; ``num_tokens``: columns generated (stop column included);
        seconds: wall time of the segment.
    """

    codes: torch.LongTensor
    index: int
    num_segments: int
    text: str
    num_tokens: int
    seconds: float


def select_context(segments: list[torch.Tensor], budget: int) -> list[torch.Tensor]:
    """Past segments to keep as context (reference window rule: the first two + an odd number of recent).

    The reference counts each length twice in its test and, when even the newest segment alone is over
    budget, duplicates the whole list (``-0`` slicing); here that case keeps the first two + the newest.
    """
    count, i = 0, 0
    for i, length in enumerate(reversed([s.size(1) for s in segments])):
        count += length
        if count + length > budget:
            break
    if i != 0 and i % 2 == 0:
        i -= 1
    if i >= len(segments) - 2:
        return list(segments)
    return segments[:2] + segments[-max(i, 1):]


class SemanticGenerator:
    """Holds a loaded model and the tokenizer; ``generate`` yields code segments."""

    def __init__(self, model: BaseTransformer, tokenizer: FishTokenizer | None = None, *, compile: bool = False,
                 decode_threads: int | None = None, max_batch_size: int = 1, prefix_cache_mb: float = 0):
        self.model = model.eval()
        self.tokenizer = tokenizer or build_tokenizer()
        self.device = model.embeddings.weight.device
        self.num_codebooks = model.config.num_codebooks
        self.max_code = model.config.codebook_size - CODE_OFFSET
        # None = torch's default (all cores). On a machine crowded by other jobs one thread can be faster
        # (OpenMP barriers wait for descheduled threads); see experiments/generation_speed.
        self.decode_threads = decode_threads
        if self.device.type == "cpu":
            model.use_column_major_weights()
        # The one engine over this model: every segment of every caller is a request in its batch. Its
        # loop thread starts on the first generate() (compiled CUDA graphs stay on that one thread).
        self.engine = Engine(model, max_batch_size, compile=compile, prefix_cache_mb=prefix_cache_mb,
                             decode_threads=decode_threads)

    @classmethod
    def from_config(cls, model_cfg, checkpoint_path, *, device="cpu", dtype=torch.float32,
                    compile: bool = False, quantize: str | None = None, max_batch_size: int = 1,
                    prefix_cache_mb: float = 0) -> "SemanticGenerator":
        """``quantize``: None (as stored; an int8 file stays int8) | ``int8`` | ``int4`` (see ``load_text2semantic``)."""
        model = load_text2semantic(model_cfg, checkpoint_path, device=device, dtype=dtype, quantize=quantize)
        return cls(model, compile=compile, max_batch_size=max_batch_size, prefix_cache_mb=prefix_cache_mb)

    def forget_reference(self, key: str) -> int:
        """Drop the prefix-cache entries computed from Reference ``key``; returns how many."""
        return self.engine.forget(key)

    def encode_prompts(self, prompt_texts: Sequence[str], prompt_tokens: Sequence, speaker: str | None):
        if len(prompt_texts) != len(prompt_tokens):
            raise InputError(f"got {len(prompt_texts)} prompt texts but {len(prompt_tokens)} prompt token files",
                             "give one prompt_text per prompt_tokens file (same order)", field="prompt_text")
        out = []
        for i, (t, c) in enumerate(zip(prompt_texts, prompt_tokens)):
            codes = check_prompt_codes(c, self.num_codebooks, max_code=self.max_code,
                                       name=f"prompt_tokens[{i}]" if len(prompt_tokens) > 1 else "prompt_tokens")
            out.append(encode_prompt(self.tokenizer, t, bos=i == 0, prompt_tokens=codes, speaker=speaker,
                                     num_codebooks=self.num_codebooks).to(self.device))
        return out

    def generate(self, text: str, *, prompt_texts: Sequence[str] = (), prompt_tokens: Sequence = (),
                 params: SynthesisParams | None = None, progress: bool = True,
                 should_stop: Callable[[], bool] | None = None, rng: torch.Generator | None = None,
                 on_column: Callable[[int, int, torch.Tensor], None] | None = None, tags: Sequence[str] = (),
                 **sampling) -> Iterator[Segment]:
        """Generate semantic codes for ``text``; yields one :class:`Segment` per text segment.

        Args:
            params: validated :class:`~speechlm.params.SynthesisParams` (its sampling fields and
                ``speaker`` are used); or pass them as keyword arguments (``top_p=0.5``), validated here.
            on_column: ``on_column(segment, i, column)`` after every generated column ``(1 + NC, 1)`` raw
                grid ids (the stop column included), e.g. to decode while generating (``TTS.stream``);
                it may raise to stop. It runs on the engine thread: keep it cheap.
                :meth:`segment_texts` tells which text each segment speaks.
            rng: the request's token generator, kept across segments (None = torch's global generator).
            tags: ``Reference.key`` of each prompt (the prefix cache drops their entries on
                :meth:`forget_reference`).

        Raises:
            InputError: empty text, bad prompt codes, more prompt texts than token files, a parameter
                out of its range (see :mod:`speechlm.params`).
            GenerationCancelled: ``should_stop()`` returned True (checked after every token).
        """
        p = params if params is not None else SynthesisParams.make(sampling)
        if params is not None and sampling:
            p = p.replace(**sampling)
        check_text(text)
        speaker = p.speaker
        prompts = self.encode_prompts(list(prompt_texts), list(prompt_tokens), speaker)
        texts = self.segment_texts(text, p)
        tok = self.tokenizer
        encoded = [encode_prompt(tok, t, bos=i == 0 and not prompts, speaker=speaker,
                                 num_codebooks=self.num_codebooks).to(self.device) for i, t in enumerate(texts)]
        sampling_params = SamplingParams.make(p.temperature, p.top_p, p.repetition_penalty, self.device)
        budget = self.model.config.max_seq_len - CONTEXT_RESERVE - sum(x.size(1) for x in prompts)
        history: list[torch.Tensor] = []
        shared = sum(x.size(1) for x in prompts) if tags else 0  # the voices' prompt: cached for every request
        self.engine.start()
        total_tokens, t_start = 0, time.perf_counter()
        for idx, seg in enumerate(encoded):
            history.append(seg)
            prompt = torch.cat(prompts + select_context(history, budget), dim=1)
            t0 = time.perf_counter()
            sink = None if on_column is None else functools.partial(on_column, idx)
            cols = self._run(prompt, p, sampling_params, progress, should_stop, rng, sink, tuple(tags),
                             (idx, len(encoded), texts[idx]), shared)
            seconds = time.perf_counter() - t0
            total_tokens += cols.size(1)
            log.info("segment %d/%d: %d tokens in %.2f s, %.2f tokens/s", idx + 1, len(encoded), cols.size(1),
                     seconds, cols.size(1) / max(seconds, 1e-9))
            history.append(self._as_context(cols))
            yield Segment(self._codes(cols), idx, len(encoded), texts[idx], cols.size(1), seconds)
        seconds = time.perf_counter() - t_start
        log.info("generated %d tokens in %.2f seconds, %.2f tokens/s", total_tokens, seconds,
                 total_tokens / max(seconds, 1e-9))

    @staticmethod
    def segment_texts(text: str, params: SynthesisParams) -> list[str]:
        """The text of each segment ``generate`` makes of ``text`` (``chunk_length`` characters each)."""
        split = params.iterative_prompt and params.chunk_length > 0
        texts = split_text(text, params.chunk_length) if split else [text]
        if not texts:
            raise InputError(f"text {text!r} has nothing to speak after cleaning (only punctuation/unsupported "
                             "characters)", "pass words in a supported language", field="text")
        return texts

    def _run(self, prompt, p: SynthesisParams, params: SamplingParams, progress, should_stop, rng, sink, tags,
             where: tuple[int, int, str], shared: int) -> torch.Tensor:
        """One segment through the engine (blocks this thread until the request leaves the batch), with a
        progress bar sized by the tokens the text is expected to take and an ETA."""
        idx, n, text = where
        limit = self.engine.cache_len - prompt.size(1)
        expected = min(estimate_tokens(text), p.max_new_tokens or limit, limit)
        console = Console(stderr=True)
        bar = Progress(TextColumn(f"segment {idx + 1}/{n}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("tokens"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       console=console, transient=True, disable=not (progress and console.is_terminal))

        def on_column(i: int, column: torch.Tensor) -> None:
            # an estimate: a segment that runs longer grows the bar instead of sitting at 100 %
            bar.update(task, completed=i + 1, total=max(expected, i + 2))
            if sink is not None:
                sink(i, column)

        with bar:
            task = bar.add_task("generate", total=expected)
            return self.engine.generate(prompt, p.max_new_tokens, params=params, eos_id=self.tokenizer.eos_token_id,
                                        im_end_id=self.tokenizer.im_end_id, generator=rng, on_column=on_column,
                                        should_stop=should_stop, tags=tags, prefix_len=shared, keep=idx + 1 < n)

    def _codes(self, cols: torch.Tensor) -> torch.Tensor:
        """VQ indices as ``generate_long`` yields them: drop the stop column and the frame before it.

        A kept column whose codebook holds PAD/EOS (a random or badly conditioned model; the reference
        asserts) becomes code 0 instead, with a warning, so the output stays decodable.
        """
        codes = cols[1:, :-2] - CODE_OFFSET
        if codes.numel() and bool((codes < 0).any()):
            log.warning("%d generated codebook values were PAD/EOS inside the segment; replaced by code 0",
                        int((codes < 0).sum()))
            codes = codes.clamp_min(0)
        return codes.cpu()

    def _as_context(self, cols: torch.Tensor) -> torch.Tensor:
        """Generated columns as context for the next segment: stop column dropped, closed by ``<|im_end|>``."""
        kept = cols[:, :-1]
        if kept.size(1) and int(kept[0, -1]) == self.tokenizer.im_end_id:
            return kept
        end = torch.full((cols.size(0), 1), CODEBOOK_EOS, dtype=cols.dtype, device=cols.device)
        end[0, 0] = self.tokenizer.im_end_id
        return torch.cat([kept, end], dim=1)
