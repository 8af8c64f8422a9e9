"""What a city sensor needs beside the classifier: its health reports (:mod:`.health`), systemd's notify
protocol and watchdog (:mod:`.notify`) and its TOML configuration file (:mod:`.settings`).

Each module imports only the standard library, numpy and the core's records: a sensor installs without the
training stack (torch, lightning, scikit-learn, librosa, matplotlib).
"""
