"""Programs around the engine: microphone captions, websocket client."""
