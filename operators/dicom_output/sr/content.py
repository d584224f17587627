"""Parts of the Measurement Report: observer context and the vessel measurement group.

PS3.16 TID 1001/1002/1004: the observer is the device (the appliance and its model),
not a person. TID 1411 Volumetric ROI Measurements and Qualitative Evaluations: one
group for the vessel segment, holding TID 300 measurements and TID 1411 row 12
qualitative evaluations, with TID 4019 Algorithm Identification.
"""

from __future__ import annotations

import highdicom as hd

from operators.dicom_output.common import OutputKind, OutputSettings, derived_uid
from operators.dicom_output.seg.enum import (
    ANATOMICAL_STRUCTURE,
    BLOOD_VESSEL,
    VESSEL_SEGMENT_NUMBER,
)
from operators.dicom_output.sr.enum import (
    DEVICE_OBSERVER,
    MEMBER_DISAGREEMENT,
    MILLILITER,
    NO,
    NO_UNITS,
    OOD_THRESHOLD,
    REVIEW_REQUIRED,
    TRACKING_LABEL,
    VOLUME,
    YES,
)
from operators.values import SegmentationResult, SeriesVolume


def device_observer_context(settings: OutputSettings) -> hd.sr.ObservationContext:
    """TID 1002 Observer Context with TID 1004 Device Observer Identifying Attributes.

    The device UID is derived from the equipment identity, so one appliance is one
    observer in every report it writes.
    """
    equipment = settings.equipment
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(
            settings.uid_root,
            "device",
            equipment.manufacturer,
            equipment.model_name,
            equipment.device_serial_number,
        ),
        name=equipment.model_name,
        manufacturer_name=equipment.manufacturer,
        model_name=equipment.model_name,
        serial_number=equipment.device_serial_number,
    )
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(DEVICE_OBSERVER),
        observer_identifying_attributes=device,
    )
    return hd.sr.ObservationContext(observer_device_context=observer)


def algorithm_identification(result: SegmentationResult) -> hd.sr.AlgorithmIdentification:
    """TID 4019: the ensemble's name and version, one parameter per member model."""
    return hd.sr.AlgorithmIdentification(
        name=result.model_name,
        version=result.model_version,
        parameters=[f"member={name}" for name in result.member_names] or None,
    )


def vessel_measurement_group(
    volume: SeriesVolume,
    result: SegmentationResult,
    segmentation: hd.seg.Segmentation,
    settings: OutputSettings,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """TID 1411 group for the vessel segment of ``segmentation``.

    Measurements: vessel volume (mL) from the binary mask and the voxel spacing, the study
    uncertainty score (the members' disagreement on the mask, 1 - mean pairwise Dice,
    no units) and the threshold it was compared with. Evaluation: "review required"
    yes/no, the out-of-distribution flag.
    """
    algorithm = algorithm_identification(result)
    measurements = [
        hd.sr.Measurement(
            name=VOLUME,
            value=result.vessel_volume_ml(volume.geometry),
            unit=MILLILITER,
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(
            name=MEMBER_DISAGREEMENT,
            value=float(result.uncertainty_score),
            unit=NO_UNITS,
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(name=OOD_THRESHOLD, value=float(result.ood_threshold), unit=NO_UNITS),
    ]
    segment = hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=VESSEL_SEGMENT_NUMBER,
        source_series=hd.sr.SourceSeriesForSegmentation(volume.series_instance_uid),
    )
    tracking = hd.sr.TrackingIdentifier(
        uid=settings.uid(volume, OutputKind.REPORT, result.model_version, "tracking"),
        identifier=TRACKING_LABEL,
    )
    review = YES if result.out_of_distribution else NO
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=segment,
        finding_type=BLOOD_VESSEL,
        finding_category=ANATOMICAL_STRUCTURE,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(REVIEW_REQUIRED, review)],
    )
