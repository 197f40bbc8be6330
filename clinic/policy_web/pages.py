"""``/admin/policy``: the loaded rule sets (what law the platform applies, and from which sources) and a
simulator that asks the same engine through ``POST /api/v1/policy/simulate``."""

from __future__ import annotations

from aiohttp import web

from clinic.policy.context import ACTIONS, DRUG_CATEGORIES, INSTITUTION_LEVELS, MODES, PARTICIPANTS, PATIENT_GROUPS
from clinic.services.policy import authorize_read, describe_rule_sets
from clinic.web.context import services
from clinic.web.i18n import gettext as _
from clinic.web.render import render


def _labels() -> dict[str, dict[str, str]]:
    """Translated labels for the engine's vocabulary (built per request: the locale is per request)."""
    return {
        "action": {"consult": _("Consultation"), "prescribe": _("Prescribing"), "deliver": _("Home delivery"),
                   "record": _("Recording")},
        "mode": {"video": _("Video"), "audio": _("Audio only"), "chat": _("Chat"), "photo": _("Photo")},
        "participants": {"doctor-patient": _("Doctor and patient"), "doctor-doctor": _("Doctor and doctor")},
        "group": {
            "island_remote": _("Island or remote area"), "long_term_care": _("Long-term care recipient"),
            "disabled": _("Registered disabled"), "infectious_disease": _("Infectious disease"),
            "rare_disease": _("Rare disease"), "post_surgery": _("Post-surgery care"),
            "underserved_area": _("Medically underserved area"), "ship_crew": _("Ship crew"),
            "prisoner": _("Prisoner"), "military": _("Military"),
        },
        "level": {"clinic": _("Clinic"), "hospital": _("Hospital")},
        "category": {"narcotic": _("Narcotic"), "psychotropic": _("Psychotropic"),
                     "abuse_prone": _("Abuse-prone"), "emergency_contraceptive": _("Emergency contraceptive"),
                     "controlled": _("Controlled substance")},
        "obligation": {
            "video_required": _("The consultation must be by real-time video"),
            "video_impossible_documented": _("Record why video was impossible"),
            "pharmacist_patient_agreement_required": _("Pharmacist and patient agree how the medicine is received"),
            "pharmacist_review_required": _("A pharmacist reviews the prescription first"),
            "in_person_followup": _("An in-person follow-up is needed"),
            "epcs_two_factor_required": _("Sign with two-factor authentication (EPCS)"),
            "all_participants_consent": _("Every participant consents to recording"),
            "participant_consent": _("A participant consents to recording"),
            "explain_telemedicine_limits": _("Explain the limits of telemedicine and obtain consent"),
            "electronic_prescription_required": _("Issue the prescription electronically"),
            "guardian_present_required": _("A guardian must be present"),
            "medical_records_access_required": _("Confirm access to the patient's records first"),
            "pre_consultation_required": _("Hold a pre-consultation first"),
            "online_medication_guidance": _("The pharmacist gives online medication guidance"),
            "state_medical_chamber_rules_apply": _("Check the state medical chamber's rules"),
            "testing_only": _("Testing only: decided by the permissive default"),
        },
        "result": {"allowed": _("Allowed"), "denied": _("Denied"), "rule_set": _("Rule set"),
                   "none": _("None"), "reasons": _("Reasons"), "obligations": _("Obligations"),
                   "invalid": _("Please correct the highlighted fields."), "failed": _("The check failed.")},
    }


async def policy_page(request: web.Request) -> web.Response:
    p = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise web.HTTPFound("/login?next=/admin/policy")
    authorize_read(p)
    engine = services(request.app).extra["policy"].engine
    rule_sets = describe_rule_sets(engine)
    jurisdictions = sorted({rs["jurisdiction"] for rs in rule_sets if rs["jurisdiction"] != "*"})
    return render(request, "admin/policy.html", {
        "rule_sets": rule_sets, "jurisdictions": jurisdictions, "labels": _labels(),
        "vocab": {"actions": ACTIONS, "modes": MODES, "participants": PARTICIPANTS, "groups": PATIENT_GROUPS,
                  "levels": INSTITUTION_LEVELS, "categories": DRUG_CATEGORIES},
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/policy", policy_page)

