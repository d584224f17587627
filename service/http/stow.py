"""DICOMweb STOW-RS: ``POST /dicomweb/studies`` and ``/dicomweb/studies/{study}``.

The Studies Store Transaction of PS3.18 10.5 for DICOM instances: the request is
``multipart/related; type="application/dicom"`` (PS3.18 8.6.1.2, Table 10.5.1-1), one
Part 10 instance per part, read as a stream and stored part by part through the same
``InstanceIngest`` as C-STORE. Metadata + bulk data requests (``application/dicom+json``
parts) are not supported: 415. A preamble before the first boundary is not supported either.

The response body is the Store Instances Response Module (PS3.18 Annex I, Table I.1-1)
as ``application/dicom+json`` (PS3.18 F.2):

* Referenced SOP Sequence (0008,1199): each stored instance (a duplicate of one already
  held counts as stored: storage is idempotent by SOP Instance UID);
* Failed SOP Sequence (0008,1198): each refused instance whose UIDs could be read, with
  its Failure Reason (0008,1197) (PS3.18 I.2.2; the codes of ``service.storage_status``);
* Other Failures Sequence (0008,119A): failures without a readable instance (a part
  that does not parse, a body cut short after some parts were stored);
* Retrieve URL (0008,1190), Type 2, present and empty (top level and per item): the
  appliance is not a WADO-RS origin server (instances stay only until processed). The
  job that processes the study is in a ``Link: </v1/jobs/ID>; rel="related"`` header.

HTTP status (PS3.18 10.5.3): 200 all stored; 202 some stored, some failed; 409 none
stored; 503 none stored and every refusal out of resources (with Retry-After); 400 a
malformed body or target UID; 406 Accept excludes dicom+json; 415 wrong media type.
Each distinct failure comment also goes into a ``Warning: 299`` header (the header
PS3.18 uses for transaction warnings), so a client sees the specific reason, not only
its code.
"""

from __future__ import annotations

import json

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response

from service.http.multipart import MalformedBodyError, MediaType, iter_parts, negotiate
from service.http.problems import ProblemError
from service.http.uploads import Outcome, appliance, jobs_of, out_of_resources, refused, store
from service.spool import is_uid
from service.storage_status import Reason

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
MULTIPART_RELATED = "multipart/related"
MAX_WARNINGS = 10  # distinct Warning headers: enough to diagnose, bounded header size


def _reference(outcome: Outcome, *, failed: bool) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = outcome.sop_class_uid
    item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
    if failed:
        item.FailureReason = outcome.result.status
    else:
        item.RetrieveURL = None  # Type 2: no WADO-RS here
    return item


def store_instances_response(outcomes: list[Outcome]) -> Dataset:
    """The Store Instances Response Module (PS3.18 Table I.1-1) of ``outcomes``."""
    ds = Dataset()
    ds.RetrieveURL = None
    stored = [o for o in outcomes if o.stored]
    refused = [o for o in outcomes if not o.stored]
    named = [o for o in refused if o.sop_class_uid and o.sop_instance_uid]
    anonymous = [o for o in refused if not (o.sop_class_uid and o.sop_instance_uid)]
    if stored:
        ds.ReferencedSOPSequence = [_reference(o, failed=False) for o in stored]
    if named:
        ds.FailedSOPSequence = [_reference(o, failed=True) for o in named]
    if anonymous:
        others = []
        for outcome in anonymous:
            item = Dataset()
            item.FailureReason = outcome.result.status
            others.append(item)
        ds.OtherFailuresSequence = others
    return ds


def _headers(outcomes: list[Outcome]) -> dict[str, str]:
    headers: dict[str, str] = {}
    links = [f'</v1/jobs/{job}>; rel="related"' for job in jobs_of(outcomes)]
    if links:
        headers["Link"] = ", ".join(links)
    seen: set[str] = set()
    warnings: list[str] = []
    for outcome in outcomes:
        comment = outcome.result.comment or outcome.result.reason
        if outcome.stored or comment in seen:
            continue
        seen.add(comment)
        text = f"{outcome.name}: {comment}".replace('"', "'").encode("ascii", "replace")
        warnings.append(f'299 minivess "{text.decode()}"')
    if warnings:
        headers["Warning"] = ", ".join(warnings[:MAX_WARNINGS])
    return headers


async def stow(request: Request) -> Response:
    """STOW-RS Studies Store Transaction (PS3.18 10.5)."""
    target = request.path_params.get("study")
    if target is not None and not is_uid(target):
        raise ProblemError(400, "bad-request", "the target study is not a valid DICOM UID")
    media = MediaType.parse(request.headers.get("content-type"))
    if media.essence != MULTIPART_RELATED:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "STOW-RS takes multipart/related; "
            f'type="{DICOM}", not {media.essence or "a body without Content-Type"}',
        )
    part_type = media.params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise ProblemError(
            415,
            "unsupported-media-type",
            f"only {DICOM} parts are supported "
            f"(type={part_type}); metadata and bulk data requests are not",
        )
    if negotiate(request.headers.get("accept"), [DICOM_JSON, "application/json"]) is None:
        raise ProblemError(406, "not-acceptable", f"the STOW-RS response is {DICOM_JSON} only")
    service = appliance(request)
    outcomes: list[Outcome] = []
    try:
        limit = service.settings.max_instance_bytes  # one instance in memory at a time
        async for part in iter_parts(request.stream(), media.params.get("boundary", ""), limit):
            name = f"part {len(outcomes) + 1}"
            kind = part.media_type.essence or DICOM  # a part without Content-Type: the type
            if part.too_large:
                outcomes.append(refused(service, name, Reason.TOO_LARGE,
                                        f"Part over {limit} bytes"))  # fmt: skip
                continue
            if kind != DICOM:
                outcomes.append(refused(service, name, Reason.UNSUPPORTED_PART_TYPE,
                                        f"Part is {kind[:40]}, not {DICOM}"))  # fmt: skip
                continue
            outcomes.append(await store(service, part.data, name, target))
    except MalformedBodyError as error:
        if not any(o.stored for o in outcomes):
            raise ProblemError(400, "bad-request", str(error)) from None
        # Some parts are stored already (and stay stored): say what failed after them.
        outcomes.append(refused(service, "body", Reason.MALFORMED_BODY, str(error)))
    if not outcomes:
        raise ProblemError(400, "bad-request", "the multipart body has no parts")
    stored = sum(o.stored for o in outcomes)
    headers = _headers(outcomes)
    if stored == len(outcomes):
        status = 200
    elif stored:
        status = 202
    elif out_of_resources(outcomes):
        status, headers["Retry-After"] = 503, "60"
    else:
        status = 409
    body = json.dumps(store_instances_response(outcomes).to_json_dict())
    return Response(body, status_code=status, media_type=DICOM_JSON, headers=headers)
