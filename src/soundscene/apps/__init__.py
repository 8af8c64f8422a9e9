"""Applications over the core: live streams, MQTT sensors, the HTTP service, ONNX export, the equalizer, the
fleet hub (storage, API, page, alerts) and batch inference over archives (local or Ray)."""
