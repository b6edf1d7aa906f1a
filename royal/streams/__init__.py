"""The realtime layer: durable event log, broker, fan-out, SSE and WebSocket framing."""
