"""Local DPS + IoT Hub emulator that the unmodified Azure SDKs talk to over HTTPS (see emulator/README.md).

Entry points: ``python -m emulator --state-dir DIR``, ``emulator.server.Emulator`` for in-process use, and the
pytest plugin ``emulator.testing``.
"""
