"""Applications over the core: live streams, MQTT sensors, the HTTP service, ONNX export, the equalizer."""
