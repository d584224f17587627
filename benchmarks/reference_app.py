"""The MONAI Deploy reference composition the pipeline benchmark compares against.

The SDK's own operators, composed as its example apps do: ``DICOMDataLoaderOperator`` ->
``DICOMSeriesSelectorOperator`` -> ``DICOMSeriesToVolumeOperator`` -> one
``MonaiSegInferenceOperator`` per ensemble member (TorchScript export of the same trained
weights, same spacing, normalisation, window size and overlap, no test-time
augmentation) -> an averaging operator -> ``DICOMSegmentationWriterOperator``.

Run one study per process (the benchmark measures the whole process):

    python -m benchmarks.reference_app --input STUDY --output OUT --models TS_DIR --timings T.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from highdicom.sr.coding import Code
from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application, Fragment, Image, Operator, OperatorSpec
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_seg_writer_operator import (
    DICOMSegmentationWriterOperator,
    SegmentDescription,
)
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.dicom_utils import ModelInfo
from monai.deploy.operators.monai_seg_inference_operator import MonaiSegInferenceOperator
from monai.transforms import (
    Activationsd,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    Lambdad,
    LoadImaged,
    MapTransform,
    Spacingd,
)

from models.manifest import Normalisation, read_manifest
from models.normalisation import normalise

RULES = json.dumps(
    {
        "selections": [
            {
                "name": "CT",
                "conditions": {"Modality": "(?i)CT", "ImageType": ["ORIGINAL", "!LOCALIZER"]},
            }
        ]
    }
)
TIMINGS: dict[str, float] = {}


class Normalised(MapTransform):
    """The members' normalisation (models.normalisation.normalise) of a CT study."""

    def __init__(self, keys: str, spec: Normalisation) -> None:
        super().__init__(keys)
        self.spec = spec

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            d[key] = image.new_tensor(normalise(image.numpy(), self.spec, "CT"))
        return d


class MemberInferenceOperator(MonaiSegInferenceOperator):
    """One member: the SDK operator with the member's pre/post transforms, timed."""

    def __init__(
        self,
        fragment: Fragment,
        *args: Any,
        spacing: tuple[float, float, float],
        normalisation: Normalisation,
        **kwargs: Any,
    ) -> None:
        self.member_spacing = spacing
        self.normalisation = normalisation
        super().__init__(
            fragment, *args, pre_transforms=Compose([]), post_transforms=Compose([]), **kwargs
        )

    def pre_process(self, img_reader: Any) -> Compose:
        dz, dy, dx = self.member_spacing
        return Compose(
            [
                LoadImaged(keys="image", reader=img_reader),
                EnsureChannelFirstd(keys="image"),
                Normalised(keys="image", spec=self.normalisation),
                Spacingd(keys="image", pixdim=(dx, dy, dz), mode="bilinear"),
            ]
        )

    def post_process(self, pre_transforms: Compose) -> Compose:
        # The SDK operator squeezes one channel and casts to uint8, so each member hands on
        # its vessel probability quantised to 0..255 (error <= 0.002) for the averaging.
        return Compose(
            [
                Activationsd(keys="pred", softmax=True),
                Lambdad(keys="pred", func=lambda x: x[1:2]),
                Invertd(
                    keys="pred", transform=pre_transforms, orig_keys="image", nearest_interp=False
                ),
                Lambdad(keys="pred", func=lambda x: (x * 255.0).round()),
            ]
        )

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        started = time.perf_counter()
        super().compute(op_input, op_output, context)
        TIMINGS[f"inference:{self.name}"] = time.perf_counter() - started


class AverageOperator(Operator):
    """Averages the members' vessel probability and thresholds it at 0.5."""

    def __init__(self, fragment: Fragment, *args: Any, members: int, **kwargs: Any) -> None:
        self.members = members
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        for index in range(self.members):
            spec.input(f"member{index}")
        spec.output("seg_image")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        started = time.perf_counter()
        images = [op_input.receive(f"member{index}") for index in range(self.members)]
        vessel = np.mean([image.asnumpy().astype(np.float32) / 255.0 for image in images], axis=0)
        mask = (vessel >= 0.5).astype(np.uint8)
        op_output.emit(Image(mask, images[0].metadata()), "seg_image")
        TIMINGS["average"] = time.perf_counter() - started


def _timed(operator_class: type, label: str) -> type:
    class Timed(operator_class):
        def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
            started = time.perf_counter()
            super().compute(op_input, op_output, context)
            TIMINGS[label] = time.perf_counter() - started

    Timed.__name__ = operator_class.__name__
    return Timed


class ReferenceApp(Application):
    def __init__(
        self, *args: Any, input_dir: Path, output_dir: Path, model_dir: Path, **kwargs: Any
    ) -> None:
        self.input_dir, self.output_dir, self.model_dir = input_dir, output_dir, model_dir
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        manifest = read_manifest(self.model_dir)
        context = AppContext({})
        context.models = None  # load each member from its own model_path
        loader = _timed(DICOMDataLoaderOperator, "load")(
            self, CountCondition(self, 1), input_folder=self.input_dir, name="loader"
        )
        selector = _timed(DICOMSeriesSelectorOperator, "select")(self, rules=RULES, name="selector")
        to_volume = _timed(DICOMSeriesToVolumeOperator, "volume")(self, name="to_volume")
        members = manifest.members_for("CT")  # the benchmark studies are CT
        average = AverageOperator(self, members=len(members), name="average")
        writer = _timed(DICOMSegmentationWriterOperator, "write SEG")(
            self,
            segment_descriptions=[
                SegmentDescription(
                    segment_label="Blood vessel",
                    segmented_property_category=Code("91723000", "SCT", "Anatomical Structure"),
                    segmented_property_type=Code("59820001", "SCT", "Blood vessel"),
                    algorithm_name=manifest.name,
                    algorithm_version=manifest.version,
                )
            ],
            output_folder=self.output_dir,
            model_info=ModelInfo("MinIVess", manifest.name, manifest.version, ""),
            name="seg_writer",
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(
            selector, to_volume, {("study_selected_series_list", "study_selected_series_list")}
        )
        for index, member in enumerate(members):
            inference = MemberInferenceOperator(
                self,
                app_context=context,
                model_path=self.model_dir / f"{member.name}.ts",
                roi_size=member.patch_size,
                overlap=0.25,
                sw_batch_size=2,
                spacing=member.input_spacing_mm,
                normalisation=member.normalisation,
                name=member.name,
            )
            self.add_flow(to_volume, inference, {("image", "image")})
            self.add_flow(inference, average, {("seg_image", f"member{index}")})
        self.add_flow(
            selector, writer, {("study_selected_series_list", "study_selected_series_list")}
        )
        self.add_flow(average, writer, {("seg_image", "seg_image")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--models", type=Path, required=True, help="folder with <member>.ts and manifest.json"
    )
    parser.add_argument("--timings", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    ReferenceApp(input_dir=args.input, output_dir=args.output, model_dir=args.models).run()
    TIMINGS["total in process"] = time.perf_counter() - started
    TIMINGS["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.timings.write_text(json.dumps(TIMINGS, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
