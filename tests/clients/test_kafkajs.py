"""kafkajs 2.2.4 (pure JavaScript, its own protocol code), driven through js/driver.js."""

import json
import subprocess
from pathlib import Path

from strata_harness import TIMEOUT, consume_all, unique_topic, wait_until

DRIVER = Path(__file__).parent / "js" / "driver.js"


def kafkajs(strata, *args):
    result = subprocess.run(["node", str(DRIVER), strata.bootstrap, *map(str, args)],
                            capture_output=True, text=True, timeout=TIMEOUT * 2)
    assert result.returncode == 0, f"kafkajs {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}"
    return json.loads(result.stdout)


def test_admin_create_list_offsets_delete(strata):
    topic = unique_topic("js-admin")
    assert kafkajs(strata, "create", topic, 3) is True, "createTopics reports the topic as new"
    assert topic in kafkajs(strata, "list")

    offsets = kafkajs(strata, "offsets", topic)
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets) == [
        (p, "0", "0") for p in range(3)], offsets

    kafkajs(strata, "delete", topic)
    wait_until(lambda: topic not in kafkajs(strata, "list"), f"{topic} gone", interval=0.5)


def test_produce(strata):
    topic = unique_topic("js-produce")
    kafkajs(strata, "create", topic, 1)
    results = kafkajs(strata, "produce", topic, 1000)
    assert [int(r["baseOffset"]) for r in results] == list(range(0, 1000, 100)), results
    assert all(r["errorCode"] == 0 for r in results), results

    [offsets] = kafkajs(strata, "offsets", topic)
    assert (offsets["low"], offsets["high"]) == ("0", "1000"), offsets
    # Another client reads what kafkajs encoded.
    messages = consume_all(strata.bootstrap, topic)
    assert [(m.key(), m.value()) for m in messages] == [
        (f"k{i}".encode(), f"js-{i}".encode()) for i in range(1000)]


def test_consume(strata):
    topic = unique_topic("js-consume")
    kafkajs(strata, "create", topic, 1)
    kafkajs(strata, "produce", topic, 200)
    assert kafkajs(strata, "consume", topic, 200) == [f"js-{i}" for i in range(200)]
