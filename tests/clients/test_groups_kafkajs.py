"""Consumer groups with kafkajs 2.2.4 (its own protocol code, classic protocol): partitions
shared and moved, and committed offsets across broker restarts. Each member is a
`node js/driver.js member` process that reports what it is assigned, consumes and commits."""

import json
import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from group_helpers import (GROUP_BROKER_CONFIG, PARTITIONS, Ledger, poll_until, produce,
                           three_members_share_and_hand_over)
from strata_harness import TIMEOUT, create_topic, unique_topic

pytestmark = pytest.mark.strata_config(GROUP_BROKER_CONFIG)

DRIVER = Path(__file__).parent / "js" / "driver.js"


class Member:
    """A kafkajs member process; kafkajs commits after each batch it consumed."""

    def __init__(self, name, strata, group, topic, ledger):
        self.name, self.ledger = name, ledger
        self.assigned = []
        self.events = queue.Queue()
        self.process = subprocess.Popen(
            ["node", str(DRIVER), strata.bootstrap, "member", topic, group],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def poll(self):
        assert self.process.poll() is None, \
            f"{self.name} exited {self.process.returncode}: {self.process.stderr.read()}"
        try:
            event = self.events.get(timeout=0.05)
        except queue.Empty:
            return
        self._apply(event)
        while not self.events.empty():
            self._apply(self.events.get())

    def _apply(self, event):
        if not event:
            return  # the driver's closing "null"
        if "assigned" in event:
            self.assigned = sorted(event["assigned"])
        elif "record" in event:
            self.ledger.record(self.name, *event["record"])
        elif "committed" in event:
            for partition, offset in event["committed"].items():
                self.ledger.commit(int(partition), offset)

    def partitions(self) -> list:
        return self.assigned

    def kill(self):
        """Dies without leaving the group or committing."""
        self.process.kill()
        self.process.wait(timeout=TIMEOUT)

    def close(self):
        """Leaves the group (kafkajs commits what it consumed first) and exits."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=TIMEOUT)
        assert code == 0, f"{self.name} exited {code}: {self.process.stderr.read()}"
        for line in self.process.stdout:
            self._apply(json.loads(line))
        while not self.events.empty():
            self._apply(self.events.get())


def members(strata):
    return lambda name, group, topic, ledger: Member(name, strata, group, topic, ledger)


def test_three_members_share_partitions_and_take_over_from_one_that_leaves(strata):
    three_members_share_and_hand_over(strata, members(strata))


def test_the_partitions_of_a_member_that_dies_move_after_its_session_timeout(strata):
    three_members_share_and_hand_over(strata, members(strata), crash=True)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "kill-9"])
def test_members_resume_at_committed_offsets_after_a_broker_restart(strata, kill):
    topic = unique_topic("resume")
    group = unique_topic("group")
    create_topic(strata.bootstrap, topic, PARTITIONS)
    produced = produce(strata, topic, "before", 60)
    ledger = Ledger()
    first = Member("first", strata, group, topic, ledger)
    poll_until([first], lambda: ledger.count() == 60, "the records before the restart")
    first.close()
    consumed = set(ledger.consumed)

    strata.restart(kill=kill)

    produced |= produce(strata, topic, "after", 60)
    second = Member("second", strata, group, topic, ledger)
    poll_until([second], lambda: ledger.count() == 120, "the records after the restart")
    second.close()
    ledger.check(produced)
    again = {position for position, members in ledger.consumed.items() if "second" in members}
    assert not again & consumed, "records consumed before the restart were consumed again"
