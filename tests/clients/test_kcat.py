"""kcat (Debian's librdkafka 2.0.2): metadata listing and an ordered produce/consume round trip."""

import json
import subprocess

from strata_harness import TIMEOUT, unique_topic


def kcat(strata, *args, stdin=None):
    result = subprocess.run(["kcat", "-b", strata.bootstrap, *args], input=stdin,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result.stdout


def test_list_shows_broker_and_topics(strata):
    topic = unique_topic("kcat-list")
    kcat(strata, "-P", "-t", topic, stdin="hello\n")  # auto-creates the topic

    metadata = json.loads(kcat(strata, "-L", "-J"))
    assert [b["name"] for b in metadata["brokers"]] == [f"{strata.bootstrap}"], metadata["brokers"]
    topics = {t["topic"]: t for t in metadata["topics"]}
    assert topic in topics, f"{topic} not listed: {sorted(topics)}"
    partitions = topics[topic]["partitions"]
    assert partitions and all(p["leader"] == metadata["brokers"][0]["id"] for p in partitions), partitions


def test_thousand_lines_come_back_in_order(strata):
    topic = unique_topic("kcat-lines")
    lines = [f"line-{i:04d}" for i in range(1000)]
    kcat(strata, "-P", "-t", topic, "-p", "0", stdin="\n".join(lines) + "\n")

    out = kcat(strata, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q")
    got = out.splitlines()
    assert len(got) == len(lines), f"got {len(got)} lines back, expected {len(lines)}"
    assert got == lines, f"first difference at line {next(i for i, (a, b) in enumerate(zip(got, lines)) if a != b)}"
