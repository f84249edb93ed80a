"""The one set of bounds on what a request may make the server do, for every route.

A decoding option multiplies the work of every 30 s window: ``beam_size`` hypotheses,
each tried at up to ``len(temperatures)`` temperatures, for up to ``max_new_tokens``
tokens; a prompt is tokenized in full before the decoder keeps its last 223 tokens.
Unbounded, one request (``beam_size=1500`` was accepted once) holds a worker for
minutes. Every route checks the options it built with :func:`check_options` (HTTP 422
naming the field, before the upload is decoded), and ``serve`` checks its own defaults
with it at start. ``best_of`` is not taken by any route: the backends fix it at 1.
"""

from __future__ import annotations

from whisper_finetune.serving.errors import ApiError

MAX_BEAM_SIZE = 10  # Whisper's and faster-whisper's default is 5
MAX_TEMPERATURES = 11  # fallback ladder 0, 0.1, ..., 1.0 (Whisper's own: 6 steps of 0.2)
MAX_PROMPT_CHARS = 1000  # the decoder reads at most 223 prompt tokens
MAX_NEW_TOKENS = 448  # Whisper's whole text context


def check_options(options, params: dict[str, str] | None = None) -> None:
    """Raise ApiError 422 for a decoding option beyond the server's bounds.

    Args:
        options: the :class:`DecodeOptions` a request would run with.
        params: option field -> the request field that set it (``initial_prompt`` ->
            ``prompt``), for the error's ``param`` and message.
    """
    params = params or {}

    def refuse(field: str, message: str) -> None:
        name = params.get(field, field)
        raise ApiError(422, f"{name} {message}", param=name, code="option_out_of_range")

    if options.beam_size > MAX_BEAM_SIZE:
        refuse("beam_size", f"must be at most {MAX_BEAM_SIZE}, got {options.beam_size}")
    temperatures = options.temperatures
    if len(temperatures) > MAX_TEMPERATURES:
        refuse(
            "temperature_increment_on_fallback",
            f"gives {len(temperatures)} fallback temperatures; at most {MAX_TEMPERATURES} "
            "are allowed (a step of at least 0.1)",
        )
    if not all(0.0 <= t <= 1.0 for t in temperatures):
        refuse("temperature", f"must be between 0 and 1, got {options.temperature}")
    if options.max_new_tokens is not None and options.max_new_tokens > MAX_NEW_TOKENS:
        refuse("max_new_tokens", f"must be at most {MAX_NEW_TOKENS}, got {options.max_new_tokens}")
    for field in ("initial_prompt", "hotwords"):
        text = getattr(options, field) or ""
        if len(text) > MAX_PROMPT_CHARS:
            refuse(
                field,
                f"is {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed "
                "(the decoder reads only its last 223 tokens)",
            )


def check_defaults(options) -> None:
    """``check_options`` on the server's own defaults, as a ValueError naming the flag."""
    try:
        check_options(options)
    except ApiError as exc:
        raise ValueError(f"--{exc.message} (every request would be refused)") from exc
