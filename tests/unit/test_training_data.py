"""Training data layouts users bring: a HAM10000-style folder or an ImageFolder tree, split by lesion."""

import csv

from PIL import Image

from models.data import binary_label, load_samples, read_split, write_split
from tests.conftest import REPO


def test_ham_layout_keeps_every_image_of_a_lesion_on_one_side(tmp_path):
    (tmp_path / "images").mkdir()
    rows = [{"lesion_id": f"L{i // 3}", "image_id": f"I{i}", "dx": "nv" if i % 2 else "mel"} for i in range(300)]
    with (tmp_path / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["lesion_id", "image_id", "dx"])
        writer.writeheader()
        writer.writerows(rows)
    samples = load_samples(tmp_path)
    sides = {}
    for sample in samples:
        sides.setdefault(sample.lesion_id, set()).add(sample.split)
    assert all(len(side) == 1 for side in sides.values())
    share = sum(s.split == "val" for s in samples) / len(samples)
    assert 0.1 < share < 0.3
    write_split(samples, tmp_path / "split.csv")
    assert read_split(tmp_path / "split.csv") == {s.image_id: s.split for s in samples}
    assert load_samples(tmp_path) == samples  # deterministic


def test_image_folder_tree_with_and_without_val(tmp_path):
    for part, names in (("train", ["a", "b", "c"]), ("val", ["d"])):
        for label in ("benign", "malignant"):
            folder = tmp_path / part / label
            folder.mkdir(parents=True)
            for name in names:
                Image.new("RGB", (8, 8)).save(folder / f"{label}-{name}.jpg")
    samples = load_samples(tmp_path)
    assert {(s.split, s.dx) for s in samples} >= {("train", "benign"), ("val", "malignant")}
    assert sum(s.split == "val" for s in samples) == 2
    assert binary_label("malignant") == "malignant" and binary_label("bcc") == "malignant"
    assert binary_label("nv") == "benign"


def test_pad_ufes_is_split_by_patient_and_the_recorded_split_is_what_the_code_gives():
    import pytest

    from models.data import SHARED_DATA, load_external, patient_split

    assert {patient_split(str(p)) for p in range(200)} == {"train", "val", "test"}
    root = SHARED_DATA / "external/pad-ufes-20"
    if not root.exists():
        pytest.skip(f"{root} is absent (the data sets live beside the repository)")
    samples = load_external(root, split_by_patient=True)
    sides: dict[str, set] = {}
    for sample in samples:
        sides.setdefault(sample.lesion_id, set()).add(sample.split)
    assert all(len(side) == 1 for side in sides.values())
    recorded = read_split(REPO / "models/pad_split.csv")
    assert recorded == {s.image_id: s.split for s in samples}


def test_derm7pt_and_held_out_sets_never_reach_training():
    import pytest

    from models.data import SHARED_DATA, named_sets

    if not (SHARED_DATA / "external/derm7pt").exists():
        pytest.skip(f"{SHARED_DATA} is absent (the data sets live beside the repository)")
    sets = named_sets()
    trained = {s.path for name in ("ham_train", "pad_train") for s in sets[name]}
    for name in ("derm7pt", "pad_test", "pad_val", "ham_val_fit", "ham_val_report", "not_a_lesion_test"):
        assert not trained & {s.path for s in sets[name]}, name
    assert not {s.lesion_id for s in sets["ham_val_fit"]} & {s.lesion_id for s in sets["ham_val_report"]}


def test_missing_data_names_each_absent_set_and_where_it_comes_from(tmp_path):
    from models.data import DATA_SOURCES, missing_data

    assert len(missing_data(tmp_path)) == len(DATA_SOURCES) and "HAM10000" in missing_data(tmp_path)[0]
    for folder in DATA_SOURCES:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metadata.csv").write_text("image_id\n")
    assert missing_data(tmp_path) == []


def test_the_data_check_exits_2_with_a_message_not_a_traceback(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "models.data", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n  - ") == 4 and "PAD-UFES-20" in done.stderr
