"""The soundscape hub (``soundscene hub``): from a fleet of sensors to a city's picture.

One process subscribes to the sensors' MQTT topics, stores what they say in a real database and serves an
API and a web page.  The parts, each small enough to hold in mind, in the order data flows:

* :mod:`.messages`: topic + payload -> a checked message (record schema) or a one-line reason;
* :mod:`.writer`: a batch of messages in one transaction: each (sensor, boot, seq) once, lost messages
  counted, :mod:`.segments` kept up to date; the function boundary for a later ``hub import``;
* :mod:`.ingest`: the MQTT subscriber (persistent session, QoS 1, acknowledged after commit);
* :mod:`.db`: the tables and the Alembic migrations (``migrations/versions``, applied at start);
* :mod:`.store`: the queries the API and the page read; :mod:`.timeutil`: times in and out;
* :mod:`.api`, :mod:`.page` (``web/``), :mod:`.live` (server-sent events), :mod:`.metrics`;
* :mod:`.alerts`: rules from a TOML file, webhook and MQTT notifications;
* :mod:`.service`: the process that wires them (:func:`~.service.run_hub`); :mod:`.simulate`: a fleet of
  simulated sensors for demos and benchmarks.

Nothing here imports :mod:`soundscene.training` or torch (tested).
"""
