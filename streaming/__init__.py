"""Streaming wav2vec2 CTC speech recognition engine (no I/O)."""
