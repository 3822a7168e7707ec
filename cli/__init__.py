"""The ``xlsr-stream`` command line: transcribe, eval, serve, mic, latency."""
