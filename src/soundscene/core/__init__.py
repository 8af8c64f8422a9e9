"""The core: audio in, features, networks, the model file, records and inference. Never loads training."""
