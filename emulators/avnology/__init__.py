"""Avnology ID emulator: a real HTTP stand-in for the identity platform, for the demo and the tests.

    from emulators.avnology import AvnologyEmulatorServer, EmulatorSettings
    with AvnologyEmulatorServer(EmulatorSettings(api_keys={"ak_test_x": "staging"})) as server:
        ...  # server.url

See README.md in this folder for the admin API and what the emulator does not model.
"""

from emulators.avnology.app import create_app
from emulators.avnology.faults import FaultConfig
from emulators.avnology.server import AvnologyEmulatorServer, EmulatorStartError
from emulators.avnology.settings import EmulatorSettings

__all__ = ["AvnologyEmulatorServer", "EmulatorSettings", "EmulatorStartError", "FaultConfig", "create_app"]
