"""Root conftest: loads the fixture plugins of each tier.

Each support module owns its fixtures (Azurite, the emulator); they start services on 127.0.0.1 only,
once per session, and stop them at the end.
"""

pytest_plugins: list[str] = [
    "tests.support.azurite_fixtures",
    "emulator.testing",
]
