"""Write the corpus of nasty DICOM inputs (``tests/corpus/``) and what each must get.

    PYTHONPATH=. .venv/bin/python tests/corpus/generate.py [--out tests/corpus]

Every file starts as a small synthetic CT series (``synthetic``) and breaks one rule. The
manifest (``manifest.json``) names, per case, its files, the C-STORE status and reason the
gateway answers for each file (``context-rejected``: the SOP class is refused at
association time, PS3.8 9.3.3.2), the outcome of the study's job, and the exit code of
``python -m map_app`` run on the case's folder alone (``operators/errors.py``). Instance
level defects share the study of ``good`` (so a good study mixed with them must still be
processed); study level defects (geometry, syntaxes, mixed series) get their own study.

Deterministic: UIDs derive from fixed names, so running it again rewrites the same bytes.
Big endian and deflated files are written by dcmtk's ``dcmconv`` (a real encoder).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from synthetic.case import Modality, generate_case
from synthetic.dicom_attributes import StudyIdentity, derived_uid
from synthetic.dicom_series import DicomQuirks, write_series

HERE = Path(__file__).resolve().parent
SPACING = (1.5, 0.6, 0.6)  # 8 slices of 40 x 40: ~4 KB a file
FOV = (12.0, 24.0, 24.0)
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
BOMB_INFLATED = 256 * 2**20  # tests run the gateway with max_instance_bytes = 64 MiB
OK = {"status": "0x0000", "reason": "stored"}
CASES = (
    "good", "truncated_file", "truncated_pixel_data", "wrong_vr", "huge_dimensions",
    "zero_length_pixel_data", "bits_allocated_mismatch", "non_image_sop_class",
    "deflate_bomb", "deflated", "big_endian", "inconsistent_spacing", "single_slice",
    "mixed_series",
)  # fmt: skip


def identity(name: str) -> StudyIdentity:
    return StudyIdentity(
        patient_name=f"CORPUS^{name.upper()[:20]}", patient_id=f"CORPUS-{name[:20]}",
        patient_birth_date="19700101", patient_sex="O",
        study_instance_uid=derived_uid("corpus-study", name), study_id="1",
        accession_number="CORPUS", study_date="20240115", study_time="120000",
    )  # fmt: skip


def series(name: str, seed: int, out: Path, study: str = "", number: int = 1) -> list[Path]:
    """One synthetic CT series of the study ``study or name`` written into ``out``."""
    case = generate_case(seed, Modality.CT, spacing=SPACING, fov_mm=FOV)
    written = write_series(case, out, DicomQuirks(), identity(study or name), series_number=number)
    return list(written.files)


def resave(path: Path, target: Path, edit: Any) -> Path:
    ds = pydicom.dcmread(path)
    uid = derived_uid("corpus", target.parent.name, target.name)  # not the path: --out varies
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    edit(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def dcmconv(flag: str, source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcmconv", flag, str(source), str(target)], check=True)
    return target


def cut(path: Path, target: Path, keep: float) -> Path:
    """The first ``keep`` fraction of the file: an interrupted transfer or copy."""
    data = path.read_bytes()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def pdf(target: Path, study: str) -> Path:
    """An Encapsulated PDF instance: valid DICOM, not an image."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = PDF_STORAGE, derived_uid("corpus-pdf")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, derived_uid("corpus-pdf-series")
    ds.Modality, ds.PatientName, ds.PatientID = "DOC", "CORPUS^PDF", "CORPUS-pdf"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID, ds.SOPInstanceUID,
    )  # fmt: skip
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return target


def deflate_bomb(path: Path, target: Path) -> Path:
    """A deflated CT slice whose Pixel Data inflates to 256 MiB (a ~260 KB file)."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = derived_uid("corpus-bomb")
    del ds.PixelData
    body = io.BytesIO()
    write_dataset(pydicom.filebase.DicomFileLike(body), ds)  # type: ignore[arg-type]
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    header = io.BytesIO()
    header.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(pydicom.filebase.DicomFileLike(header), meta)  # type: ignore[arg-type]
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [deflater.compress(body.getvalue())]
    chunks.append(
        deflater.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, BOMB_INFLATED))
    )
    zeros = b"\0" * 2**20
    chunks += [deflater.compress(zeros) for _ in range(BOMB_INFLATED // len(zeros))]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header.getvalue() + b"".join(chunks) + deflater.flush())
    return target


def _new_series(ds: Dataset, name: str, edit: Any) -> None:
    ds.SeriesInstanceUID = derived_uid("corpus-series", name)
    if edit is not None:
        edit(ds)


def _wrong_vr(ds: Dataset) -> None:
    ds[0x00280100] = DataElement(0x00280100, "CS", "SIXTEEN")  # US in the dictionary


def _huge(ds: Dataset) -> None:
    ds.Rows = ds.Columns = 65535


def _no_pixels(ds: Dataset) -> None:
    ds.PixelData = b""


def _eight_bits(ds: Dataset) -> None:
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7


def build(out: Path, work: Path) -> dict[str, Any]:
    cases: dict[str, Any] = {}

    def case(name: str, files: list[Path], text: str, status: Any = OK, **expect: Any) -> None:
        listed = {str(f.relative_to(out)): status for f in sorted(files)}
        cases[name] = {"description": text, **expect, "files": listed}

    good = series("good", 101, out / "good")
    case("good", good, "a good 8-slice CT study", job={"state": "done", "instances": 8,
         "series_done": 1}, cli={"exit": 0})  # fmt: skip
    src = series("scratch", 102, work / "scratch", study="good", number=2)
    g = identity("good").study_instance_uid

    def defective(name: str, edit: Any = None, keep: float = 1.0, count: int = 2) -> list[Path]:
        """``count`` slices of the good study, in a series of their own, each broken."""
        files = []
        for path in src[:count]:
            target = out / name / path.name
            resave(path, target, lambda ds: _new_series(ds, name, edit))
            files.append(cut(target, target, keep) if keep < 1 else target)
        return files

    bad = [
        ("truncated_file", "a file cut inside its header (an interrupted copy)",
         defective("truncated_file", keep=0.12, count=1),
         {"status": "0xA900", "reason": "invalid-uid"}, {"exit": 10, "reason": "no-image-series"}),
        ("truncated_pixel_data", "two slices whose files end inside the Pixel Data",
         defective("truncated_pixel_data", keep=0.7),
         {"status": "0xA900", "reason": "pixel-data-truncated"},
         {"exit": 12, "reason": "bad-pixel-data"}),
        ("wrong_vr", "Bits Allocated encoded as CS 'SIXTEEN' (explicit VR), two slices",
         defective("wrong_vr", _wrong_vr), {"status": "0xA900", "reason": "pixel-module-invalid"},
         {"exit": 12, "reason": "bad-pixel-data"}),
        ("huge_dimensions", "Rows and Columns of 65535 (8 GiB a slice) over 3 KB of pixels",
         defective("huge_dimensions", _huge), {"status": "0xA900",
                                               "reason": "pixel-data-truncated"},
         {"exit": 14, "reason": "volume-too-large"}),
        ("zero_length_pixel_data", "Pixel Data present with length 0, two slices",
         defective("zero_length_pixel_data", _no_pixels),
         {"status": "0xA900", "reason": "no-pixel-data"}, {"exit": 12, "reason": "bad-pixel-data"}),
        ("bits_allocated_mismatch", "Bits Allocated/Stored 8 over 16-bit pixel data, two slices",
         defective("bits_allocated_mismatch", _eight_bits),
         {"status": "0xA900", "reason": "pixel-module-mismatch"},
         {"exit": 12, "reason": "bad-pixel-data"}),
        ("non_image_sop_class", "an Encapsulated PDF in the study",
         [pdf(out / "non_image_sop_class" / "report.dcm", g)],
         {"status": "context-rejected", "reason": "abstract-syntax-not-supported"},
         {"exit": 10, "reason": "no-image-series"}),
        ("deflate_bomb", "a deflated slice whose Pixel Data inflates to 256 MiB",
         [deflate_bomb(src[0], out / "deflate_bomb" / "bomb.dcm")],
         {"status": "0xA700", "reason": "too-large"}, {"exit": 13, "reason": "bad-geometry"}),
    ]  # fmt: skip
    for name, text, files, status, cli in bad:
        case(name, files, text, status, job=None, cli=cli)
    for name, flag, seed in (("deflated", "+td", 103), ("big_endian", "+tb", 104)):
        files = [dcmconv(flag, p, out / name / p.name) for p in series(name, seed, work / name)]
        case(name, files, f"a good study in {name.replace('_', ' ')} transfer syntax",
             job={"state": "done", "instances": 8, "series_done": 1}, cli={"exit": 0})  # fmt: skip
    spaced = series("inconsistent_spacing", 105, work / "spacing")
    files = [resave(p, out / "inconsistent_spacing" / p.name, lambda ds, k=k: setattr(
        ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2],
                                     ds.ImagePositionPatient[2] + (0.4 if k % 2 else 0)]))
             for k, p in enumerate(spaced)]  # fmt: skip
    case("inconsistent_spacing", files, "8 slices, every other one shifted by 0.4 mm",
         job={"state": "failed", "error_reason": "bad-geometry"},
         cli={"exit": 13, "reason": "bad-geometry"})  # fmt: skip
    single = series("single_slice", 106, work / "single")[0]
    (out / "single_slice").mkdir()
    files = [Path(shutil.copy(single, out / "single_slice" / single.name))]
    case("single_slice", files, "a study of one slice",
         job={"state": "failed", "error_reason": "bad-geometry"},
         cli={"exit": 13, "reason": "bad-geometry"})  # fmt: skip
    mixed = out / "mixed_series"
    mixed.mkdir()
    first = series("mixed_series", 107, work / "m1")
    second = series("mixed_series", 108, work / "m2", number=2)
    interleaved = [p for pair in zip(first, second, strict=True) for p in pair]
    files = [Path(shutil.copy(p, mixed / f"{k:02d}.dcm")) for k, p in enumerate(interleaved)]
    case("mixed_series", files, "two axial series of one study, files interleaved",
         job={"state": "done", "instances": 16, "series_done": 2}, cli={"exit": 0})  # fmt: skip
    return {"good_study": g, "max_instance_bytes": 64 * 2**20, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    out = parser.parse_args(argv).out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in CASES:  # only our own case folders: --out may be any folder
        shutil.rmtree(out / name, ignore_errors=True)
    with tempfile.TemporaryDirectory() as work:
        manifest = build(out, Path(work))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(manifest['cases'])} cases, {total / 1024:.0f} KiB in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
