#!/usr/bin/env python
"""Convert published dataset layouts into training manifests (CSV: path, label, [modality], split).

    imagenet  ILSVRC CLS-LOC: train/<wnid>/*.JPEG, val/*.JPEG + LOC_val_solution.csv (ImageId, "wnid x y x y ...")
    tb-cxr    Montgomery / Shenzhen chest X-rays: *_0.png normal, *_1.png tuberculosis (the file name's last digit)
    regdb     RegDB: idx/train_thermal_<trial>.txt and idx/test_thermal_<trial>.txt ("relative/path label" lines)
    folder    any folder-per-class tree (optionally train/val/test at the top)

Paths are written relative to the manifest's folder when possible, so a data folder can move with its manifest.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path
from typing import Iterable

Row = dict


def write_manifest(rows: Iterable[Row], output: str | os.PathLike) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    if not rows:
        raise ValueError("no rows: is the layout right?")
    fields = ["path", "label", *(k for k in ("modality", "split") if any(k in r for r in rows))]
    base = output.parent.resolve()
    with output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            path = Path(row["path"]).resolve()
            try:
                row = {**row, "path": str(path.relative_to(base))}
            except ValueError:
                row = {**row, "path": str(path)}
            writer.writerow({k: row.get(k, "") for k in fields})
    return output


def imagenet_rows(train: str | None, val: str | None, val_solution: str | None) -> list[Row]:
    rows = []
    if train:
        for class_dir in sorted(p for p in Path(train).iterdir() if p.is_dir()):
            rows += [{"path": f, "label": class_dir.name, "split": "train"} for f in sorted(class_dir.glob("*.JPEG"))]
    if val:
        if not val_solution:
            raise ValueError("--val needs --val-solution (LOC_val_solution.csv)")
        with open(val_solution, newline="") as handle:
            labels = {r["ImageId"]: r["PredictionString"].split()[0] for r in csv.DictReader(handle)}
        for file in sorted(Path(val).glob("*.JPEG")):
            rows.append({"path": file, "label": labels[file.stem], "split": "val"})
    return rows


def tb_cxr_rows(image_dirs: Iterable[str]) -> list[Row]:
    rows = []
    for folder in image_dirs:
        for file in sorted(Path(folder).glob("*.png")):
            match = re.search(r"_([01])$", file.stem)
            if match:
                rows.append({"path": file, "label": "tb" if match.group(1) == "1" else "normal", "modality": "xray"})
    return rows


def regdb_rows(root: str, trial: int = 1) -> list[Row]:
    root = Path(root)
    rows = []
    for split, name in (("train", f"train_thermal_{trial}.txt"), ("test", f"test_thermal_{trial}.txt")):
        for line in (root / "idx" / name).read_text().splitlines():
            if line.strip():
                rel, label = line.rsplit(maxsplit=1)
                rows.append({"path": root / rel, "label": label, "modality": "infrared", "split": split})
    return rows


def folder_rows(root: str, modality: str | None = None) -> list[Row]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from metatransformer.training.data import records_from_folder

    return [{"path": r.source, "label": r.label, "modality": r.modality, **({"split": r.split} if r.split else {})}
            for r in records_from_folder(root, modality=modality)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="layout", required=True)
    p = sub.add_parser("imagenet")
    p.add_argument("--train"), p.add_argument("--val"), p.add_argument("--val-solution")
    p = sub.add_parser("tb-cxr")
    p.add_argument("--images", nargs="+", required=True)
    p = sub.add_parser("regdb")
    p.add_argument("--root", required=True), p.add_argument("--trial", type=int, default=1)
    p = sub.add_parser("folder")
    p.add_argument("root"), p.add_argument("--modality")
    for p in sub.choices.values():
        p.add_argument("-o", "--output", required=True, help="manifest .csv")
    args = parser.parse_args(argv)
    rows = {"imagenet": lambda: imagenet_rows(args.train, args.val, args.val_solution),
            "tb-cxr": lambda: tb_cxr_rows(args.images),
            "regdb": lambda: regdb_rows(args.root, args.trial),
            "folder": lambda: folder_rows(args.root, args.modality)}[args.layout]()
    out = write_manifest(rows, args.output)
    print(f"wrote {out}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
