"""The `strata` fixture: a fresh broker per test.

Give it a config file with a marker, e.g.
    @pytest.mark.strata_config({"auto.create.topics.enable": False})
"""

import pytest

from strata_harness import Strata


def pytest_configure(config):
    config.addinivalue_line("markers", "strata_config(dict): config file for the strata fixture")


@pytest.fixture
def strata(request, tmp_path):
    marker = request.node.get_closest_marker("strata_config")
    broker = Strata(tmp_path, marker.args[0] if marker else None)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop(kill=True)
        # Captured output is shown only when the test fails: then the log explains it.
        print(broker.log())
