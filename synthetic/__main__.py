"""``python -m synthetic``: write synthetic angiography cases as NIfTI or DICOM.

python -m synthetic splits --out var/data            # train/val/test NIfTI splits
python -m synthetic nifti --seed 7 --modality MR --out case/
python -m synthetic dicom --seed 7 --modality CT --out study/ --quirks shuffle,jpeg_ls
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from operators.nifti.io import write_nifti
from synthetic.case import Modality, generate_case
from synthetic.splits import SPLIT_SEEDS, case_name, write_split

QUIRKS = ("shuffle", "feet_first", "localizer", "jpeg_ls", "rescale")


def _quirk_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUIRKS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown quirk(s) {unknown}; choose from {QUIRKS}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    splits = commands.add_parser("splits", help="write the train/val/test splits")
    splits.add_argument("--out", type=Path, required=True)
    for name in ("nifti", "dicom"):
        sub = commands.add_parser(name, help=f"write one case as {name.upper()}")
        sub.add_argument("--seed", type=int, required=True)
        sub.add_argument("--modality", choices=[m.value for m in Modality], default="CT")
        sub.add_argument("--out", type=Path, required=True)
    commands.choices["dicom"].add_argument(
        "--quirks", type=_quirk_list, default=[], help=f"comma-separated subset of {QUIRKS}"
    )
    args = parser.parse_args(argv)

    if args.command == "splits":
        for split in SPLIT_SEEDS:
            index = write_split(split, args.out / split)  # type: ignore[arg-type]
            print(f"{split}: {len(index.cases)} cases, content SHA-256 {index.content_sha256}")
        return 0
    case = generate_case(args.seed, args.modality)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "nifti":
        name = case_name(case.modality, case.seed)
        write_nifti(args.out / f"{name}_image.nii.gz", case.image, case.geometry)
        write_nifti(args.out / f"{name}_mask.nii.gz", case.mask, case.geometry)
        print(f"wrote {name} {case.geometry.shape} to {args.out}")
        return 0
    from synthetic.dicom_series import DicomQuirks, write_series

    quirks = DicomQuirks(**{name: True for name in args.quirks})
    written = write_series(case, args.out, quirks)
    print(
        f"wrote {len(written.files)} slices (+{len(written.localizer_files)} localizer) "
        f"of series {written.series_instance_uid} to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
