"""The model card and the experiments record: ``card_template.md`` and ``experiments_template.md`` with every
figure filled in from metrics.json, the manifest and the training records. Nothing in either is typed by hand."""

from __future__ import annotations

from pathlib import Path
from string import Template

from models.curves import learning_rates, resolution_experiments
from models.specs import DISTIL, REFERENCE_NAME

TEMPLATE = Path(__file__).resolve().parent / "card_template.md"
EXPERIMENTS_TEMPLATE = TEMPLATE.parent / "experiments_template.md"
SET_NAMES = {"ham_val_report": "HAM10000 val (report half)", "derm7pt": "Derm7pt", "pad_test": "PAD-UFES-20 test"}
ROWS = ("binary", "diagnosis", "check", "reference", "assessment")
TARGETS = [  # (set, row, metric, comparison, bound)
    ("ham_val_report", "assessment", "balanced_accuracy", ">=", 0.75),
    ("ham_val_report", "assessment", "malignant_auc", ">=", 0.95),
    ("derm7pt", "assessment", "malignant_auc", ">=", 0.85),
    ("pad_test", "assessment", "malignant_auc", ">=", 0.85),
    ("ham_val_report", "diagnosis", "balanced_accuracy", ">=", 0.72),
    ("ham_val_report", "diagnosis", "macro_auc", ">=", 0.95),
    ("ham_val_report", "binary", "malignant_auc", ">=", 0.94),
    ("derm7pt", "binary", "malignant_auc", ">=", 0.80),
    ("pad_test", "binary", "malignant_auc", ">=", 0.85),
    *[("ham_val_report", role, "ece", "<=", 0.05) for role in ROWS],
]


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def evaluation_table(metrics: dict) -> str:
    lines = [
        "| set | model | n | balanced accuracy | macro AUC | malignant AUC | sensitivity | specificity | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, report in metrics["sets"].items():
        for role in ROWS:
            r = report[role]
            lines.append(
                f"| {SET_NAMES[name]} | {role} | {r['n']} | {fmt(r['balanced_accuracy'])} | "
                f"{fmt(r['macro_auc'])} | {fmt(r['malignant_auc'])} | {fmt(r['sensitivity'])} | "
                f"{fmt(r['specificity'])} | {fmt(r['ece'])} |"
            )
    return "\n".join(lines)


def conclusive_table(metrics: dict) -> str:
    lines = [
        "| set | conclusive share | n | accuracy when conclusive | malignant sensitivity when conclusive |",
        "|---|---|---|---|---|",
    ]
    for name, report in metrics["sets"].items():
        c = report["conclusive"]
        lines.append(
            f"| {SET_NAMES[name]} | {c['share']:.1%} | {c['n']} | {fmt(c['accuracy'])} | "
            f"{fmt(c['malignant_sensitivity'])} |"
        )
    return "\n".join(lines)


def target_verdict(met: bool, gap: str) -> str:
    """A target's verdict in the card's tables."""
    return "met" if met else f"**not met** (gap {gap})"


GATE_TARGETS = {  # set: (what the gate should do, share): issue 12's targets for the held-out sets
    "ham_val_report": ("kept", 0.99),
    "derm7pt": ("kept", 0.98),
    "pad_test": ("kept", 0.98),
    "not_a_lesion_test": ("rejected", 0.95),
}


def gate_table(metrics: dict) -> str:
    lines = ["| set | n | kept | rejected | target |", "|---|---|---|---|---|"]
    for name, row in metrics["gate"].items():
        kept = row.get("kept", 1 - row.get("rejected", 0))
        target = ""
        if name in GATE_TARGETS:
            what, share = GATE_TARGETS[name]
            measured = kept if what == "kept" else 1 - kept
            target = f"{what} ≥ {share:.0%}: {target_verdict(measured >= share, f'{share - measured:.1%}')}"
        lines.append(f"| {name} | {row['n']} | {kept:.1%} | {1 - kept:.1%} | {target} |")
    return "\n".join(lines)


def targets_table(metrics: dict) -> str:
    lines = ["| target | measured | 95% interval | |", "|---|---|---|---|"]
    for name, row, metric, comparison, bound in TARGETS:
        value = metrics["sets"][name][row][metric]
        interval = metrics["intervals"].get(f"{name}/{row}/{metric}")
        met = value >= bound if comparison == ">=" else value <= bound
        said = target_verdict(met, f"{abs(value - bound):.3f}")
        if interval and interval[0] <= bound <= interval[1]:
            said += "; the interval holds the bound"
        lines.append(
            f"| {row} {metric.replace('_', ' ')}, {SET_NAMES[name]} {comparison.replace('>=', '≥').replace('<=', '≤')} "
            f"{bound} | {fmt(value)} | {'–'.join(map(fmt, interval)) if interval else '—'} | "
            f"{said} |"
        )
    return "\n".join(lines)


def models_table(manifest: dict) -> str:
    lines = [
        "| role | name | architecture | input | colour constancy | file | temperature |",
        "|---|---|---|---|---|---|---|",
    ]
    models_dir = TEMPLATE.parent
    for role, e in manifest["models"].items():
        mib = (models_dir / e["file"]).stat().st_size / 2**20
        lines.append(
            f"| {role} | `{e['name']}` {e['version']} | {e['architecture']} | {e['input']['size']} px | "
            f"{e['input'].get('colour_constancy', 'none')} | `{e['file']}` ({mib:.2f} MiB) | "
            f"{e['temperature']} |"
        )
    return "\n".join(lines)


def training_table(histories: dict) -> str:
    lines = [
        "| model | architecture | epochs | image size | learning rate | time here (2 CPU cores) | last val balanced accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, h in histories.items():
        rows = h["history"]
        minutes = sum(row.get("seconds", 0) for row in rows) / 60
        lines.append(
            f"| {name} | {h['train_args']['model']} | {len(rows)} | {rows[-1]['imgsz']} | "
            f"{learning_rates(h)} | {minutes:.0f} min | {rows[-1]['val_balanced_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def weights_table(manifest: dict) -> str:
    a = manifest["assessment"]
    weights = ", ".join(f"{role} {w}" for role, w in a["weights"].items())
    bias = ", ".join(f"{label} {b:+.3f}" for label, b in a["bias"].items())
    return f"weights: {weights}; biases: {bias}"


def schedule(history: dict) -> str:
    """How the reference's stages and learning-rate schedules ran, from the per-epoch records (a resumed run with
    more epochs stretches the cosine, so the rate rises again)."""
    stages = {stage["name"]: stage for stage in history["train_args"].get("stages", [])}
    runs: list[list] = []
    for row in history["history"]:
        key = (row.get("stage", "head"), row.get("schedule_epochs", stages.get(row.get("stage"), {}).get("epochs")))
        if runs and runs[-1][0] == key:
            runs[-1][2] = row["epoch"]
        else:
            runs.append([key, row["epoch"], row["epoch"]])
    parts = []
    for index, ((stage, length), first, last) in enumerate(runs):
        if index and runs[index - 1][0][0] == stage:
            parts.append(f"resumed: epochs {first}–{last} on a {length}-epoch cosine schedule")
            continue
        spec = stages.get(stage, {})
        frozen = f"stem and first {spec['frozen_blocks']} blocks frozen" if spec.get("frozen_blocks") else "every block"
        held = ", batch-norm statistics held" if spec.get("freeze_bn") else ""
        parts.append(
            f"stage {stage} ({spec.get('imgsz', '?')} px, peak learning rate {spec.get('lr', '?')}, {frozen}{held}): "
            f"epochs {first}–{last} on a {length}-epoch cosine schedule"
        )
    return "; then ".join(parts)


def distillation(manifest: dict, histories: dict) -> str:
    """How each served student was distilled, from its own record (students not distilled are left out)."""
    parts = []
    for name, history in histories.items():
        args = history["train_args"]
        if "distillation" in args:
            epochs = sum(row.get("stage") == "distil" for row in history["history"])
            parts.append(
                f"{name.split('-')[0]} {how_distilled(args).rstrip(',')}, at {args['imgsz']} px for its last {epochs} epochs "
                f"(peak learning rate {args['lr0']:g})"
            )
    teacher = manifest["models"]["reference"]["name"]
    return (
        f"soft targets from the served {teacher} at temperature T = {DISTIL['T']}, weighted ALPHA against the labels' "
        "cross-entropy, on augmented views of every training image whose teacher logits are cached once (a student "
        "epoch costs no teacher pass); " + "; ".join(parts)
    )


def fit_figures(side: dict, sets: list[str]) -> str:
    ham, pad = (side[name] for name in sets)
    return (
        f"balanced accuracy {ham['balanced_accuracy']:.3f} / {pad['balanced_accuracy']:.3f}, malignant AUC "
        f"{ham['malignant_auc']:.3f} / {pad['malignant_auc']:.3f} (score {side['score']:.3f})"
    )


def how_distilled(train_args: dict) -> str:
    """Where a distilled student started, which views it saw and whether the teacher's wrong answers were corrected,
    e.g. "from fresh weights on 24 fresh mildly augmented views of the plain crop"."""
    record = train_args.get("distillation", {})
    start = "from fresh weights" if record.get("start") == "scratch" else "from the weights served before"
    if record.get("init_from"):
        start = f"from fresh weights with the served {record['init_from']} model's backbone"
    views = record.get("views", DISTIL["views"])
    corrected = ", the teacher's wrong answers corrected" if record.get("teacher_corrected") else ""
    reads = "shades of grey" if train_args.get("colour_constancy") else "the plain crop"
    kind = "fresh" if record.get("fresh_views") else "cached"
    if record.get("augmentation") == "mild":
        kind += " mildly augmented"
    alpha = record.get("alpha", DISTIL["alpha"])
    weight = "" if alpha == DISTIL["alpha"] else f", teacher weight ALPHA = {alpha:g}{' (labels only)' * (alpha == 0)}"
    teacher = f" (teacher: {record['teacher']})" if record.get("teacher") else ""
    described = f"{start}{teacher} on {views} {kind} views of {reads}{corrected}{weight}"
    return described + ("," if corrected or weight else "")


def selections(histories: dict, experiments: dict, role: str) -> str:
    """One line per distilled student of one role (binary, diagnosis or check): its fit-set figures against those
    of the model served before it, and whether it ships."""
    lines = []
    for name, history in {**histories, **experiments}.items():
        record = history.get("selection")
        if not record or not name.startswith(f"{role}-"):
            continue
        rows = [row for row in history["history"] if row.get("stage") == "distil"]
        # a student distilled on from distilled weights inherits their rows; the record names how many are its own
        rows = rows[-history["train_args"].get("distillation", {}).get("epochs", len(rows)) :]
        minutes = sum(row["seconds"] for row in rows) / 60

        verdict = "**shipped**" if record["shipped"] else f"not shipped (`experiments/{name}.history.json`)"
        if record.get("withheld"):
            verdict = f"won the mean score but withheld: it {record['withheld']} (`experiments/{name}.history.json`)"
        if record.get("withdrawn"):
            verdict = f"served for a round, then withdrawn: {record['withdrawn']} (`experiments/{name}.history.json`)"
        assessment = record.get("assessment")
        if assessment:
            context = f" ({assessment['context']})" if assessment.get("context") else ""
            verdict = (
                f"the assessment's out-of-fold balanced accuracy {assessment['distilled']:.3f} against "
                f"{assessment['served']:.3f}{context}: {verdict}"
            )
        lines.append(
            f"- {name.split('-distilled')[0]}: distilled {how_distilled(history['train_args'])} for {len(rows)} "
            f"epochs ({minutes:.0f} min): "
            f"{fit_figures(record['distilled'], record['sets'])} against {fit_figures(record['served'], record['sets'])} for the model served before: "
            f"{verdict}."
        )
    return "\n".join(lines)


STUDENTS_RULE = "the students' rule"


def reference_runs(experiments: dict) -> str:
    """One line per reference run judged by a rule fixed before it: its fit-set figures as it would be served
    against the served reference's, the assessment's out-of-fold balanced accuracy with it, and the verdict."""
    lines = []
    for name, history in experiments.items():
        record = history.get("reference_selection")
        if not record:
            continue
        rows = history["history"]
        minutes = sum(row["seconds"] for row in rows) / 60
        assessment = record["assessment"]
        verdict = "**shipped**" if record["shipped"] else f"not shipped: {record['why']}"
        seed = history["train_args"].get("seed")
        compared = assessment.get("compare")
        more = (
            f", class-balanced NLL {compared['class_balanced_nll']['candidate']:.3f} against "
            f"{compared['class_balanced_nll']['served']:.3f}, malignant AUC "
            f"{compared['malignant_auc']['candidate']:.3f} against {compared['malignant_auc']['served']:.3f}"
            if compared
            else ""
        )
        lines.append(
            f"- {history['train_args']['model']}, {len(rows)} epochs at {rows[-1]['imgsz']} px"
            f"{f', seed {seed}' if seed is not None else ''} "
            f"({minutes:.0f} min), validation balanced accuracy {rows[-1]['val_balanced_accuracy']:.3f}; judged by "
            f"{record.get('judged_by', STUDENTS_RULE)} before any report figure: "
            f"{fit_figures(record['candidate'], record['sets'])} on {' + '.join(record['candidate']['views'])} against "
            f"{fit_figures(record['served'], record['sets'])} for the served reference; the assessment's out-of-fold "
            f"balanced accuracy {assessment['candidate']:.4f} against {assessment['served']:.4f}{more}: {verdict} "
            f"(`experiments/{name}.history.json`)."
        )
    return "\n".join(lines)


def size_studies(experiments: dict) -> str:
    """One line per ``models.size_study`` run: the diagnosis model from scratch at another YOLO11 size or input size,
    its fit-set figures against the served model's."""
    lines = []
    for name, history in experiments.items():
        record = history.get("size_study")
        if not record:
            continue
        args, rows = history["train_args"], history["history"]
        minutes = sum(row["seconds"] for row in rows) / 60
        wins = record["candidate"]["score"] > record["served"]["score"]
        lines.append(
            f"  - {Path(args['model']).stem} at {args['imgsz']} px, {len(rows)} epochs ({minutes:.0f} min): "
            f"{fit_figures(record['candidate'], record['sets'])} against {fit_figures(record['served'], record['sets'])} "
            f"for the served model: {'**better**' if wins else 'not better'} (`experiments/{name}.history.json`)."
        )
    return "\n".join(lines)


def views_table(manifest: dict) -> str:
    """Each model's fit-set score on the identity view and on each identity + view pair, and what it is served on."""
    models = manifest["models"]
    pairs = list(next(iter(models.values()))["views_study"]["score"])
    lines = ["| model | served on | " + " | ".join(pairs) + " |", "|---" * (len(pairs) + 2) + "|"]
    for role, entry in models.items():
        scores = entry["views_study"]["score"]
        lines.append(
            f"| {role} | {' + '.join(entry['input']['views'])} | "
            + " | ".join(f"{scores[p]:.4f}" for p in pairs)
            + " |"
        )
    return "\n".join(lines)


def prior_powers(manifest: dict) -> str:
    """The chosen decision prior power of each 7-class model, e.g. "diagnosis 0, check 0, reference 0"."""
    models = manifest["models"]
    return "chosen: " + ", ".join(
        f"{role} {models[role]['decision_prior_power']:g}" for role in models if len(models[role]["labels"]) > 2
    )


def render(metrics: dict, manifest: dict, histories: dict, experiments: dict) -> str:
    a = manifest["assessment"]
    return Template(TEMPLATE.read_text()).substitute(
        models_table=models_table(manifest),
        evaluation_table=evaluation_table(metrics),
        conclusive_table=conclusive_table(metrics),
        gate_table=gate_table(metrics),
        targets_table=targets_table(metrics),
        training_table=training_table(histories),
        assessment_weights=weights_table(manifest),
        conf_threshold=a["conf_threshold"],
        agreement=", ".join(a["agreement"]),
        fit_sets=" + ".join(a["fitted_on"]),
        prior_powers=prior_powers(manifest),
        views_table=views_table(manifest),
        gate_method=manifest["gate"]["method"],
        objective=a["objective"],
        balance_study=", ".join(f"{power}: {score:.3f}" for power, score in a["balance_study"].items()),
        reference_schedule=schedule(histories[REFERENCE_NAME]),
        distillation=distillation(manifest, histories),
        size_studies=size_studies(experiments),
    )


def render_experiments(histories: dict, experiments: dict) -> str:
    """EXPERIMENTS.md: every candidate model tried, its figures from its training record and why it is or is not
    served."""
    return Template(EXPERIMENTS_TEMPLATE.read_text()).substitute(
        binary_students=selections(histories, experiments, "binary"),
        diagnosis_students=selections(histories, experiments, "diagnosis"),
        check_students=selections(histories, experiments, "check"),
        reference_runs=reference_runs(experiments),
        experiments=resolution_experiments(histories["check-resnet50"]["history"], experiments),
    )
