"""Plot a ratios.json (benchmarks/ratios.py --out DIR) as bars: each row
that has a target, its measured ratio beside the target.

    .venv/bin/python benchmarks/plot_ratios.py results/issue15-final.json results/issue15-final.png

matplotlib comes with the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path)
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(args.json.read_text())
    rows = [row for figure in data["figures"] for row in figure["rows"]
            if row.get("target") and re.match(r">=\s*[\d.]+$", row["target"])]
    labels = [row["what"] for row in rows]
    ratios = [row["ratio"] for row in rows]
    targets = [float(row["target"].split()[-1]) for row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    positions = range(len(rows))
    ax.barh(positions, ratios, color=["tab:green" if r >= t else "tab:red"
                                      for r, t in zip(ratios, targets, strict=True)])
    ax.scatter(targets, positions, marker="|", s=400, color="black", label="target", zorder=3)
    for y, ratio in zip(positions, ratios, strict=True):
        ax.text(ratio + 0.01, y, f"{ratio:.2f}", va="center", fontsize=8)
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (subject / reference), one run")
    ax.set_title(f"sockworks ratios, {data['date']}", fontsize=9)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
