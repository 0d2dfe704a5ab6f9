"""Renders dashboard panels to PNG from a real Prometheus: each panel's own PromQL, taken
from the dashboard JSON with its variables filled in as Grafana would, through query_range,
plotted with matplotlib. test_dashboards.py uses these helpers on the cluster it runs; by
hand, against any Prometheus that scrapes Strata:

    python tests/deploy/render_dashboards.py --prometheus http://127.0.0.1:9090 --minutes 30
"""

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "helm" / "strata" / "dashboards"
DOCS = ROOT / "docs" / "dashboards"

# The pictures: (file name, dashboard uid, title, panel titles).
PICTURES = [
    ("consumer-lag.png", "strata-consumer-lag", "Consumer lag",
     ["Lag per group and topic", "Lag trend", "Consumption rate", "Time to catch up"]),
    ("throughput.png", "strata-overview", "Throughput per topic",
     ["Bytes in", "Bytes out", "Messages in", "Messages out"]),
]


def load_dashboards() -> dict:
    """{uid: dashboard} of every dashboard JSON."""
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        boards[board["uid"]] = board
    return boards


def panels(board: dict) -> list:
    """Every panel that queries, rows' nested panels included."""
    found = []
    for panel in board["panels"]:
        if panel.get("targets"):
            found.append(panel)
        found.extend(p for p in panel.get("panels", []) if p.get("targets"))
    return found


def variables(board: dict, step: str, rate_interval: str) -> dict:
    """The values Grafana gives the dashboard's variables by default: "All" (the variable's
    allValue) for query variables, the default text of text boxes; plus the built-in
    intervals."""
    values = {"__interval": step, "__rate_interval": rate_interval}
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = var["allValue"]
        elif var["type"] in ("textbox", "constant", "custom"):
            values[var["name"]] = var["query"]
    return values


def expand(expr: str, values: dict) -> str:
    """`expr` with `$name` and `${name}` replaced; fails on a variable it does not know."""
    def value(match):
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"unknown variable ${name} in {expr}")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list:
    """The `result` of /api/v1/query_range: [{"metric": {...}, "values": [[t, "v"], ...]}]."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def legend(fmt: str, metric: dict) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' label value."""
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(metric.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


# How each Grafana unit is plotted: (divisor, axis label).
UNITS = {"Bps": (1024, "KiB/s"), "bytes": (1024, "KiB"), "s": (1, "seconds"),
         "short": (1, ""), "reqps": (1, "requests/s")}


def render(prometheus: str, start: float, end: float, out_dir: Path, step: float = 2,
           rate_interval: str = "15s") -> list:
    """Renders PICTURES from Prometheus's data between `start` and `end`; returns the paths."""
    boards = load_dashboards()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, uid, title, panel_titles in PICTURES:
        board = boards[uid]
        values = variables(board, f"{int(step)}s", rate_interval)
        by_title = {p["title"]: p for p in panels(board)}
        fig, axes = plt.subplots(2, 2, figsize=(13, 7.5), constrained_layout=True)
        for ax, panel_title in zip(axes.flat, panel_titles):
            panel = by_title[panel_title]
            divisor, unit = UNITS.get(panel["fieldConfig"]["defaults"].get("unit", "short"),
                                      (1, ""))
            for target in panel["targets"]:
                expr = expand(target["expr"], values)
                for series in query_range(prometheus, expr, start, end, step):
                    points = [(datetime.fromtimestamp(float(t)), float(v) / divisor)
                              for t, v in series["values"]]
                    ax.plot([t for t, _ in points], [v for _, v in points], linewidth=1.4,
                            label=legend(target.get("legendFormat", ""), series["metric"]))
            ax.set_title(panel_title, fontsize=11, loc="left")
            ax.set_ylabel(unit)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"{board['title']}: {title}", fontsize=13)
        path = out_dir / file_name
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=30, help="how far back to plot")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--step", type=float, default=15, help="seconds between points")
    parser.add_argument("--rate-interval", default="2m",
                        help="what $__rate_interval stands for (at least 4 scrape intervals)")
    args = parser.parse_args()
    end = time.time()
    for path in render(args.prometheus, end - args.minutes * 60, end, args.out, args.step,
                       args.rate_interval):
        print(path)


if __name__ == "__main__":
    main()
