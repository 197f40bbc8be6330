"""The pages where a video visit happens: the patient's ``/visit/{id}``, the doctor's ``/console/visit/{id}``
and the guest page ``/visit/{id}/join`` (room token in the URL fragment).

The pages only render the shell and the strings; ``templates/static/visit.js`` runs the device check,
check-in, waiting room and call over the signaling socket. Access is decided by the encounter service
and the room rules in :mod:`signaling.guests`, never here.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from clinic.db.clinical import Patient
from clinic.db.models import Role
from clinic.errors import Forbidden, NotFound, Unauthenticated
from clinic.services import encounters as svc
from clinic.web.context import services
from clinic.web.i18n import gettext as _
from clinic.web.render import render
from signaling.guests import role_of


def _eid(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["encounter_id"])
    except ValueError:
        raise NotFound("visit not found") from None


def _signed_in(request: web.Request) -> Any:
    p = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise Unauthenticated("sign in first")
    return p


def strings() -> dict[str, str]:
    """Every message visit.js shows, in the request's language."""
    return {
        "checking": _("Checking…"),
        "ok": _("Working"),
        "failed": _("Not working"),
        "camera_ok": _("Camera is working."),
        "camera_failed": _("We cannot use your camera. You can still join by voice."),
        "mic_ok": _("Microphone is working. Speak to see the level move."),
        "mic_failed": _("We cannot use your microphone. Check your browser's permission."),
        "speaker_played": _("Did you hear a tone? If not, turn up the volume."),
        "net_ok": _("Connection to the clinic is working."),
        "net_failed": _("We cannot reach the clinic's video service. Check your internet connection."),
        "device_ready": _("Your devices are ready."),
        "device_not_ready": _("Finish the checks above before joining."),
        "connecting": _("Connecting to the clinic…"),
        "waiting": _("You are in the waiting room. The doctor will let you in."),
        "position": _("Your place in the queue"),
        "eta_minutes": _("Estimated wait (minutes)"),
        "provider_online": _("Your doctor is online."),
        "provider_in_call": _("Your doctor is with another patient."),
        "provider_away": _("Your doctor is not online yet."),
        "admitted": _("You are in the call."),
        "in_call": _("In call"),
        "reconnecting": _("Connection lost. Reconnecting…"),
        "reconnect_in": _("Trying again in {s} seconds (attempt {n})."),
        "reconnected": _("Reconnected."),
        "media_restart": _("Restoring audio and video…"),
        "ended": _("The visit has ended. Thank you."),
        "left": _("You left the call."),
        "refused": _("You cannot join this call:"),
        "error": _("Something went wrong:"),
        "err_consent_required": _("The patient has withdrawn consent to telemedicine, so the visit cannot start. "
                                  "Contact the patient."),
        "mute": _("Mute"),
        "unmute": _("Unmute"),
        "camera_off": _("Camera off"),
        "camera_on": _("Camera on"),
        "audio_only": _("Audio only"),
        "video_on": _("Back to video"),
        "mode_audio": _("Audio-only mode: video is off for everyone."),
        "mode_video": _("Video mode."),
        "mode_chat": _("Chat-only mode: audio and video are off."),
        "quality_good": _("Network: good"),
        "quality_fair": _("Network: fair"),
        "quality_poor": _("Network: poor"),
        "quality_unknown": _("Network: measuring…"),
        "patient_waiting": _("The patient is in the waiting room."),
        "patient_not_here": _("The patient has not joined yet."),
        "patient_in_call": _("The patient is in the call."),
        "recording_on": _("Recording (everyone consented)."),
        "recording_off": _("Not recording."),
        "consent_asked": _("The clinician asks to record this visit. Do you agree?"),
        "photo_sent": _("Photo sent."),
        "photo_failed": _("The photo could not be sent."),
        "guest_link": _("Send this link to the guest (valid for 10 minutes):"),
        "ci_identity": _("The name or birth date does not match the patient of this visit. Check them and try "
                         "again."),
        "ci_too_early": _("Check-in opens 30 minutes before your appointment. Please come back then."),
        "ci_closed": _("This visit can no longer be checked in: it was cancelled, has started or has ended. "
                       "See My visits."),
        "ci_missing": _("Fill in your family name, given name, birth date and why you are seeing the doctor."),
        "ci_other": _("Check-in did not work. Please try again in a moment, or call the clinic."),
        "ci_call": _("Clinic phone: {phone}"),
        "network_error": _("The network is not reachable. Check your connection and try again."),
        "consent_needed": _("Please read the consent to telemedicine and answer it."),
        "consent_given": _("Thank you. Your consent is recorded."),
        "consent_declined": _("You did not consent, so this telemedicine visit cannot go ahead."),
        "consent_failed": _("Your answer could not be saved. Please try again."),
        "consent_changed": _("The consent text has just changed. Reload the page to read the new version."),
        "you": _("You"),
        "peer_left": _("A participant left the call."),
        "sharing": _("You are sharing your screen."),
        "unmute_remote": _("Tap to turn on sound"),
    }


def _page(request: web.Request, template: str, role: str, eid: uuid.UUID, extra: dict[str, Any], *,
          template_only: dict[str, Any] | None = None) -> web.Response:
    """The visit page shell: ``extra`` goes to the template and to visit.js's config; ``template_only`` to the
    template alone (data another script reads from its own element)."""
    settings = services(request.app).settings
    config = {"encounter_id": str(eid), "role": role, "stun_urls": list(settings.stun_urls),
              "strings": strings(), **extra}
    # "<" is escaped so nothing in the data can close the <script> element it is embedded in.
    data = json.dumps(config, ensure_ascii=False).replace("<", "\\u003c")
    return render(request, template, {"config_json": data, "encounter_id": eid, **extra, **(template_only or {})})


def _phone_display(e164: str) -> str:
    """A clinic's number as people dial it at home (02-700-0000), else internationally."""
    import phonenumbers

    try:
        num = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return e164
    fmt = phonenumbers.PhoneNumberFormat
    return phonenumbers.format_number(num, fmt.NATIONAL if num.country_code == 82 else fmt.INTERNATIONAL)


async def patient_page(request: web.Request) -> web.StreamResponse:
    from clinic.db.clinical import ConsentKind, Patient
    from clinic.db.models import Organization
    from clinic.encounters.symptoms import emergency_number
    from clinic.services import patients as patient_svc

    p = _signed_in(request)
    eid = _eid(request)
    async with services(request.app).uow_factory() as uow:
        e = await svc.load(uow, p, eid)
        role = role_of(p, e)
        if role == "clinician":
            raise web.HTTPFound(f"/console/visit/{eid}")
        uow.audit.record(p, "encounter.read", object_type="Encounter", object_id=e.id,
                         organization_id=e.organization_id, patient_id=e.patient_id, detail={"view": "visit"})
        # Check-in needs the patient's consent to telemedicine: the page asks for it first, once.
        consented = await patient_svc.current_consent(uow, e.patient_id, ConsentKind.TELEMEDICINE) is not None
        uow.audit.record(p, "consent.read", object_type="Consent", organization_id=e.organization_id,
                         patient_id=e.patient_id, detail={"kind": ConsentKind.TELEMEDICINE.value, "view": "visit"})
        org = await uow.session.get(Organization, e.organization_id)
        patient = await uow.session.get(Patient, e.patient_id)
        await uow.commit()
    text = patient_svc.consent_text(ConsentKind.TELEMEDICINE)
    # Where the patient is, not where the clinic is: that is who answers the call.
    where = patient.jurisdiction if patient is not None else org.jurisdiction if org else ""
    clinic = {"name": org.name if org else "", "phone": org.phone if org else "",
              "phone_display": _phone_display(org.phone) if org and org.phone else "",
              "email": org.email if org else ""}
    return _page(request, "visit/patient.html", "patient", eid, {
        "status": e.status.value, "mode": e.mode, "patient_id": str(e.patient_id), "clinic": clinic,
        "emergency_number": emergency_number(where),
        "consent": {"kind": text.kind.value, "version": text.version, "title": text.title,
                    "paragraphs": list(text.paragraphs), "needed": not consented},
    })


async def doctor_page(request: web.Request) -> web.StreamResponse:
    from clinic.db.base import utcnow
    from clinic.services import notes as notes_svc
    from clinic.web.routes.notes import note_out

    p = _signed_in(request)
    eid = _eid(request)
    async with services(request.app).uow_factory() as uow:
        e = await svc.load(uow, p, eid, "encounter.manage")
        if not p.has_role(Role.CLINICIAN, e.organization_id):
            raise Forbidden("only clinicians can open the consult view")
        role_of(p, e)  # the clinician who took the visit, nobody else
        patient = await uow.session.get(Patient, e.patient_id)
        assert patient is not None
        uow.audit.record(p, "encounter.read", object_type="Encounter", object_id=e.id,
                         organization_id=e.organization_id, patient_id=e.patient_id, detail={"view": "consult"})
        # The note panel starts from the note as the API would return it (null until the first save), so the
        # page never has to ask for a note that does not exist yet.
        try:
            note: dict[str, Any] | None = (await note_out(
                uow, await notes_svc.get_for_encounter(uow, p, e.id))).model_dump(mode="json")
        except NotFound:
            note = None
        await uow.commit()

    return _page(request, "visit/doctor.html", "clinician", eid, {
        "status": e.status.value, "mode": e.mode, "patient_name": patient.full_name,
        "patient_age": patient.age_on(utcnow().date()), "chief_complaint": e.chief_complaint,
        "symptoms": list(e.symptoms),
    }, template_only={"note_state": {"encounter_id": str(eid), "encounter_status": e.status.value, "note": note}})


async def guest_page(request: web.Request) -> web.StreamResponse:
    # The room token is in the URL fragment, so it never reaches this handler or any log.
    eid = _eid(request)
    return _page(request, "visit/guest.html", "guest", eid, {"status": "", "mode": "video"})


def install(app: web.Application) -> None:
    app.router.add_get("/visit/{encounter_id}", patient_page)
    app.router.add_get("/visit/{encounter_id}/join", guest_page)
    app.router.add_get("/console/visit/{encounter_id}", doctor_page)
