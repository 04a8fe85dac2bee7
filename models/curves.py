"""Training curves: the per-epoch records (``*.history.json``), how a resumed run is described, and the plot."""

from __future__ import annotations

import json
from pathlib import Path


def training_runs(history: dict) -> list[tuple[float, int, int]]:
    """(peak learning rate, image size, epochs) per training run, in order; a resumed model has several."""
    runs: list[list] = []
    for row in history["history"]:
        run = [row["lr0"], row["imgsz"]]
        if runs and runs[-1][:2] == run:
            runs[-1][2] += 1
        else:
            runs.append(run + [1])
    return [tuple(run) for run in runs]


def learning_rates(history: dict) -> str:
    """ "0.001" or, for a resumed model, "0.001 (8 epochs at 80 px), then 0.0003 (7 epochs at 112 px)"."""
    runs = training_runs(history)
    if len(runs) == 1:
        return str(runs[0][0])
    return ", then ".join(f"{lr} ({n} epoch{'s' * (n > 1)} at {size} px)" for lr, size, n in runs)


def load_histories(folder: Path) -> dict[str, dict]:
    """Every ``<name>.history.json`` in ``folder``, by name."""
    return {
        path.name.removesuffix(".history.json"): json.loads(path.read_text())
        for path in sorted(Path(folder).glob("*.history.json"))
    }


def plot_training(histories: dict, experiments: dict, out: Path) -> None:
    """Validation balanced accuracy after every epoch (the saved weight average), one line per model; experiments
    that were not shipped are dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 4.5))
    for name, history in experiments.items():
        rows = history["history"]
        axis.plot(
            [row["epoch"] for row in rows],
            [row["val_balanced_accuracy"] for row in rows],
            linestyle="--",
            color="grey",
            linewidth=1,
            label=f"{name} (not shipped)",
        )
    for role, history in histories.items():
        epochs = [row["epoch"] for row in history["history"]]
        axis.plot(epochs, [row["val_balanced_accuracy"] for row in history["history"]], marker=".", label=role)
        start = 0
        for _, _, n in training_runs(history)[:-1]:
            start += n
            axis.axvline(start + 0.5, color=axis.lines[-1].get_color(), linestyle=":", linewidth=0.8)
    axis.set_xlabel("epoch (dotted: training resumed, possibly at another image size)")
    axis.set_ylabel("validation balanced accuracy")
    axis.set_title("training curves (validation lesions, before temperature and prior)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the plot: many runs
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def resolution_experiments(history: list[dict], experiments: dict) -> str:
    """One sentence per unshipped ResNet50 run that went on from the from-scratch weights (the shipped history
    before its distillation rows) at another image size, with the labels only."""
    base = [row for row in history if row.get("stage") != "distil"]
    sentences = []
    for name, experiment in experiments.items():
        extra = experiment["history"][len(base) :]
        args = experiment["train_args"]
        if (
            args["model"] != "resnet50"
            or "distilled_from" in args
            or not extra
            or extra[0]["imgsz"] == base[-1]["imgsz"]
        ):
            continue
        minutes = sum(row["seconds"] for row in extra) / 60
        sentences.append(
            f"Going on at {extra[0]['imgsz']} px instead of {base[-1]['imgsz']} px with the labels only (no teacher) "
            f"for {len(extra)} more epochs ({minutes:.0f} minutes, `experiments/{name}.history.json`, dashed in the "
            f"curves) ended at {extra[-1]['val_balanced_accuracy']:.3f} validation balanced accuracy against "
            f"{base[-1]['val_balanced_accuracy']:.3f} for the weights it went on from: the size alone did not help."
        )
    return " ".join(sentences)
