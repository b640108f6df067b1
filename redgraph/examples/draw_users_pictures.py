"""Draws the demo's two pictures of the kind users bring, which the embedded model never trained on:
a bar chart as matplotlib draws it by default, and a receipt as a PDF whose text is set in DejaVu
Sans (matplotlib's own font, embedded in the PDF). The files beside this script are its output;
run it again (``python -m redgraph.examples.draw_users_pictures``, needs matplotlib) to redraw them.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
RECEIPT_LINES = (("Date:", "2026-11-02"), ("Flat white", "$4.20"), ("Croissant", "$3.10"), ("Orange juice", "$3.95"),
                 ("Total:", "$11.25"))


def draw_chart(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    axes.bar(["Q1", "Q2", "Q3", "Q4"], [12, 35, 27, 8])
    axes.set_title("Sales by quarter")
    axes.set_ylabel("Units")
    figure.savefig(path, metadata={"Software": None})
    plt.close(figure)


def draw_receipt(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(3.5, 4.2))
    figure.text(0.08, 0.92, "Corner Cafe, 4 Mill Lane", fontsize=8)
    figure.text(0.08, 0.82, "RECEIPT", fontsize=18, fontweight="bold")
    for row, (label, value) in enumerate(RECEIPT_LINES):
        y = 0.68 - 0.1 * row
        figure.text(0.08, y, label, fontsize=10)
        figure.text(0.92, y, value, fontsize=10, ha="right")
    figure.savefig(path, metadata={"Creator": None, "Producer": None, "CreationDate": None})
    plt.close(figure)


if __name__ == "__main__":
    draw_chart(HERE / "sales_chart.png")
    draw_receipt(HERE / "receipt.pdf")
