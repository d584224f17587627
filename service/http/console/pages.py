"""The console's HTML, written on the server (no script, no template engine, no CDN).

Every value from the journal, a report or a request is escaped (:func:`e`). Pages name
jobs and studies by their ids and UIDs only: no patient name or ID appears anywhere,
titles included (a browser's history and tab bar are not access-controlled).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from html import escape
from urllib.parse import quote

from operators.run_report import SeriesOutcome
from service.http.console.overview import JobSummary
from service.http.health import Check
from service.http.models import iso
from service.job_states import TERMINAL, UNFINISHED

STATIC = "/console/static"
STATES = (*UNFINISHED, *TERMINAL)
HOME_REFRESH_S = 15


def e(value: object) -> str:
    return escape(str(value), quote=True)


def when(timestamp: float | None) -> str:
    moment = iso(timestamp)
    return "-" if moment is None else moment.replace("T", " ")[:19] + "Z"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def job_href(job_id: str) -> str:
    return f"/console/jobs/{quote(job_id, safe='')}"


def layout(title: str, body: str, csrf: str | None, refresh_s: int | None = None) -> str:
    """The page frame; ``csrf`` None: signed out (no navigation, no sign-out button)."""
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    nav = ""
    if csrf is not None:
        nav = (
            '<nav><a href="/">Jobs</a><a href="/docs">API</a>'
            '<form method="post" action="/console/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit">Sign out</button></form></nav>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{refresh}<title>{e(title)} - MinIVess console</title>"
        f'<link rel="icon" href="{STATIC}/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{STATIC}/console.css"></head><body>'
        f'<header><a class="brand" href="/">MinIVess</a>{nav}</header>'
        f"<main>{body}</main></body></html>"
    )


def login_page(error: str | None, locked: bool) -> str:
    if locked:
        body = (
            '<section class="card narrow"><h1>Console locked</h1><p>No API token is '
            "configured on the appliance and dev mode is off, so nobody can sign in "
            "(the HTTP API is locked too). Set <code>api_token</code> and restart.</p></section>"
        )
        return layout("Locked", body, None)
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<section class="card narrow"><h1>Sign in</h1>'
        "<p>Use the appliance's API token (the one HTTP clients send as "
        "<code>Authorization: Bearer</code>).</p>"
        f'{problem}<form method="post" action="/console/login">'
        '<label for="token">API token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        'required autofocus><button type="submit">Sign in</button></form></section>'
    )
    return layout("Sign in", body, None)


def state_badge(state: str) -> str:
    return f'<span class="state state-{e(state)}">{e(state.replace("_", " "))}</span>'


def flag_badge(flagged: bool | None) -> str:
    if flagged is None:
        return '<span class="muted">-</span>'
    if flagged:
        return '<span class="flag review" title="out of distribution">REVIEW</span>'
    return '<span class="flag ok">in distribution</span>'


def score_text(summary: JobSummary) -> str:
    if summary.score is None:
        return '<span class="muted">-</span>'
    score, threshold = summary.score
    return f'{score:.4f} <span class="muted">/ {threshold:.4f}</span>'


def _table(headers: Iterable[str], rows: list[str], empty: str, css: str = "") -> str:
    if not rows:
        return f'<p class="muted">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return (
        f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _stage_list(summary: JobSummary, most: int) -> str:
    stages = [(name, t) for name, t in summary.stages if ":" not in name][:most]
    return ", ".join(f"{e(name)} {t:.2f}" for name, t in stages) or "-"


def _resend_form(job_id: str, csrf: str, label: str) -> str:
    return (
        f'<form method="post" action="{job_href(job_id)}/retry-export" class="inline">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<button type="submit" class="resend">{e(label)}</button></form>'
    )


def health_section(checks: list[Check], counts: Counter[str], unfinished: int,
                   version: str, model: str) -> str:  # fmt: skip
    ready = all(check.ok for check in checks)
    rows = [
        f'<tr><td>{e(c.name)}</td><td><span class="{"ok" if c.ok else "bad"}">'
        f"{'ok' if c.ok else 'failing'}</span></td><td>{e(c.detail)}</td></tr>"
        for c in checks
    ]
    tiles = "".join(
        f'<div class="tile state-{e(s)}"><b>{counts.get(s, 0)}</b>{e(s.replace("_", " "))}</div>'
        for s in STATES
    )
    return (
        '<section class="card" id="health"><h2>Health <span class="'
        f'{"ok" if ready else "bad"}">{"ready" if ready else "not ready"}</span></h2>'
        f'<p class="muted">appliance {e(version)}, model {e(model)}</p>'
        f"{_table(('check', 'result', 'detail'), rows, 'no checks')}</section>"
        f'<section class="card" id="queue"><h2>Queue</h2><p>{unfinished} unfinished '
        f'studies</p><div class="tiles">{tiles}</div><p class="muted">states of the newest '
        "1000 jobs</p></section>"
    )


def dead_letter_section(dead: list[JobSummary], csrf: str) -> str:
    rows = [
        f'<tr><td><a href="{job_href(s.job.job_id)}">{e(s.job.job_id)}</a></td>'
        f"<td>{when(s.job.finished_at)}</td><td>{s.job.export_attempts}</td>"
        f'<td class="wrap">{e(s.job.error or "-")}</td>'
        f"<td>{_resend_form(s.job.job_id, csrf, 'Re-send export')}</td></tr>"
        for s in dead
    ]
    table = _table(("job", "given up", "attempts", "last error", ""), rows,
                   "No dead-lettered exports.")  # fmt: skip
    return (
        f'<section class="card" id="dead-letters"><h2>Dead-lettered exports</h2>{table}</section>'
    )


def jobs_section(jobs: list[JobSummary]) -> str:
    rows = [
        f'<tr class="job" data-job="{e(s.job.job_id)}">'
        f'<td><a href="{job_href(s.job.job_id)}">{e(s.job.job_id)}</a></td>'
        f"<td>{state_badge(s.job.state)}</td><td>{e(s.job.source)}</td>"
        f"<td>{when(s.job.created_at)}</td><td>{s.job.instances}</td>"
        f'<td>{seconds(s.run_seconds)}</td><td class="stages">{_stage_list(s, 3)}</td>'
        f"<td>{score_text(s)}</td><td>{flag_badge(s.flagged)}</td></tr>"
        for s in jobs
    ]
    headers = ("job", "state", "via", "received", "instances", "run", "longest stages (s)",
               "uncertainty / threshold", "review")  # fmt: skip
    return (
        f'<section class="card" id="jobs"><h2>Jobs</h2>'
        f"{_table(headers, rows, 'No jobs yet.', 'jobs')}</section>"
    )


def home_page(top: str, jobs: list[JobSummary], dead: list[JobSummary], csrf: str,
              notice: str | None) -> str:  # fmt: skip
    banner = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    sections = dead_letter_section(dead, csrf) + jobs_section(jobs)
    body = f'{banner}<div class="grid">{top}</div>{sections}'
    return layout("Jobs", body, csrf, HOME_REFRESH_S)


def _facts(pairs: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _caption(picture: str) -> str:
    if picture == "mip":
        return "maximum-intensity projection: vessel SEG | uncertainty map"
    return f"axial slice ({picture.replace('-', ' ')} of the vessel's extent)"


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else e(form.format(value))


def series_section(job_id: str, index: int, series: SeriesOutcome,
                   pictures: list[str] | str) -> str:  # fmt: skip
    """One series: what the run found and its pictures (or why there are none)."""
    facts = [
        ("series", e(series.series_instance_uid)),
        ("selected as", e(series.selection_name or "-")),
        ("modality", e(series.modality or "-")),
        ("voxels", e("x".join(map(str, series.shape)) if series.shape else "-")),
        ("spacing (mm)", e(" x ".join(f"{s:g}" for s in series.spacing_mm or ()) or "-")),
        ("status", state_badge(series.status) + (f" {e(series.error)}" if series.error else "")),
        ("vessel volume", _number(series.vessel_volume_ml, "{:.3f} mL")),
        (
            "uncertainty score",
            _number(series.uncertainty_score, "{:.4f}")
            + " (threshold "
            + _number(series.ood_threshold, "{:.4f}")
            + ")",
        ),
        ("review", flag_badge(series.out_of_distribution)),
    ]
    if isinstance(pictures, str):
        figures = f'<p class="muted">No pictures: {e(pictures)}</p>'
    else:
        base = f"{job_href(job_id)}/series/{index}"
        figures = "".join(
            f'<figure><img src="{base}/{e(name)}.png" alt="{e(name)} of series {index + 1}" '
            f'class="picture" data-picture="{e(name)}"><figcaption>{e(_caption(name))}'
            "</figcaption></figure>"
            for name in pictures
        )
    return (
        f'<section class="card series"><h2>Series {index + 1}</h2>{_facts(facts)}'
        f'<div class="pictures">{figures}</div></section>'
    )


def job_page(summary: JobSummary, series: str, files: list[str], csrf: str,
             notice: str | None) -> str:  # fmt: skip
    job = summary.job
    banner = f'<p class="notice" role="status">{e(notice)}</p>' if notice else ""
    facts = [
        ("state", state_badge(job.state)),
        ("review", flag_badge(summary.flagged)),
        ("study", e(job.study_uid)),
        ("via", e(job.source)),
        ("correlation id", e(job.correlation_id)),
        ("received", when(job.first_received_at) + " to " + when(job.last_received_at)),
        ("instances", e(job.instances)),
        ("pipeline runs", e(job.attempts)),
        ("finished", when(job.finished_at)),
        ("exported to", e(", ".join(job.delivered) or "-")),
        ("export attempts", e(job.export_attempts)),
        ("error", e(f"{job.error_reason or ''} {job.error or ''}".strip() or "-")),
    ]
    action = ""
    if job.state in ("dead_letter", "done") and job.outputs:
        label = "Re-send export" if job.state == "dead_letter" else "Send again"
        action = f"<p>{_resend_form(job.job_id, csrf, label)}</p>"
    stages = [f"<tr><td>{e(name)}</td><td>{t:.3f}</td></tr>" for name, t in summary.stages]
    links = [
        f'<li><a href="{job_href(job.job_id)}/files/{quote(name)}">{e(name)}</a></li>'
        for name in files
    ]
    if links and job.outputs:
        links.append(f'<li><a href="{job_href(job.job_id)}/results.zip">all results (zip)</a></li>')
    body = (
        f'{banner}<h1>Job {e(job.job_id)}</h1><div class="grid">'
        f'<section class="card" id="job">{_facts(facts)}{action}</section>'
        '<section class="card" id="timings"><h2>Stage timings</h2>'
        f"<p>run {seconds(summary.run_seconds)}</p>"
        f"{_table(('stage', 'seconds'), stages, 'Not run yet.')}</section>"
        f'<section class="card" id="outputs"><h2>Outputs</h2>'
        f"{'<ul>' + ''.join(links) + '</ul>' if links else '<p class=muted>None yet.</p>'}"
        f"</section></div>{series}"
    )
    return layout(f"Job {job.job_id}", body, csrf)


def error_page(status: int, detail: str, csrf: str | None) -> str:
    body = (
        f'<section class="card narrow"><h1>{status}</h1><p>{e(detail)}</p>'
        '<p><a href="/">Back to the jobs</a></p></section>'
    )
    return layout(f"Error {status}", body, csrf)
