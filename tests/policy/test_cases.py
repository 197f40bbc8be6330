"""Table-driven cases taken from the actual rules; each names the source it encodes."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from tests.policy.helpers import ENGINE, ctx


class Case(NamedTuple):
    id: str
    source: str
    allowed: bool
    rule: str | None  # a rule id that must appear among the reasons (None: don't care)
    obligations: tuple[str, ...]
    ctx: dict[str, Any]
    rule_set: str | None = "*"  # "*": don't check


def P(days: int | None, cond: bool = True, inst: bool = True) -> dict[str, Any]:
    prior = None if days is None else {"days_ago": days, "same_condition": cond, "same_institution": inst}
    return {"prior_in_person": prior}


def pat(days: int | None = 10, cond: bool = True, inst: bool = True, **kw: Any) -> dict[str, Any]:
    return {**P(days, cond, inst), **kw}


KR_MSA = "KR Medical Service Act Art. 34; Supreme Court 2016도309"
KR_COVID = "KR MOHW temporary telemedicine 2020-02-24; MOHW notice 2021-10-19"
KR_PILOT = "KR MOHW pilot plan 2023-05-30 (Busan Ilbo / Aju News)"
KR_EXP = "KR MOHW 보완방안 2023-12-01 (Channel A, Seoul Shinmun Q&A, Dailypharm 2023-12-11)"
KR_CRISIS = "KR MOHW crisis allowance 2024-02-23 (Money Today); obesity drugs 2024-11-29"
KR_POST = "KR MOHW 2025-10-23: criteria from 2025-10-27"
KR_NEW = "KR amended Medical Service Act passed 2025-12-02 (Asia Economy, Kukinews)"
JP_97 = "JP MHLW 1997 notice; 2018 online care guideline"
JP_0410 = "JP MHLW 0410 time-limited handling (2020-04-10)"
JP_22 = "JP MHLW online care guideline 2022 revision; Q&A Q18"
CN_18 = "CN NHC Internet Diagnosis Measures (trial) 2018-09-14, Art. 19"
DE_18 = "DE MBO-Ä § 7(4) (121st Ärztetag 2018); E-Rezept 2024; StGB § 201"
GB_21 = "GB GMC good practice in prescribing (2021-04-05)"
SG_23 = "SG Healthcare Services Act Phase 2 (2023-06-26); OMS Regulations 2023 reg. 30"
US_FED = "US Ryan Haight Act; DEA fourth temporary extension 90 FR 61301; 21 CFR 1311.140"
US_LIC = "US state licensure (CCHP cross-state licensing)"
US_CA = "US-CA B&P Code §§ 2052, 2060; Penal Code § 632"
US_NY = "US-NY licence requirement; EO 202.5 waiver 2020-03-18..2021-06-24"
US_TX = "US-TX Occupations Code § 155.001, ch. 111"


CASES: list[Case] = [
    # --- KR before 2020 -------------------------------------------------
    Case("kr-2019-doctor-patient-denied", KR_MSA, False, "kr-pre2020-doctor-patient-prohibited", (),
         {"at": "2019-06-03T10:00:00+09:00"}, "kr-2002-doctor-to-doctor-only"),
    Case("kr-2019-doctor-doctor-allowed", KR_MSA, True, "kr-art34-doctor-to-doctor", (),
         {"at": "2019-06-03T10:00:00+09:00", "participants": "doctor-doctor"}),
    Case("kr-2019-prescribe-denied", KR_MSA, False, "kr-pre2020-doctor-patient-prohibited", (),
         {"at": "2019-06-03T10:00:00+09:00", "action": "prescribe"}),
    Case("kr-2020-02-23-last-day-denied", KR_MSA, False, "kr-pre2020-doctor-patient-prohibited", (),
         {"at": "2020-02-23T23:59:00+09:00", "patient": pat(None)}),
    Case("kr-1999-no-rule-set", KR_MSA, False, "default-deny", (),
         {"at": "1999-01-05T10:00:00+09:00"}, None),
    # --- KR COVID-19 temporary ------------------------------------------
    Case("kr-covid-first-day-audio", KR_COVID, True, "kr-covid-consult", (),
         {"at": "2020-02-24T00:00:00+09:00", "mode": "audio", "patient": pat(None)}, "kr-2020-covid-temporary"),
    Case("kr-covid-boundary-in-utc", KR_COVID, True, "kr-covid-consult", (),
         {"at": "2020-02-23T15:30:00Z", "patient": pat(None)}, "kr-2020-covid-temporary"),
    Case("kr-covid-chat-uncovered", KR_COVID, False, "default-deny", (),
         {"at": "2021-03-02T10:00:00+09:00", "mode": "chat"}),
    Case("kr-covid-psychotropic-before-ban", KR_COVID, True, "kr-covid-prescribe", (),
         {"at": "2021-11-01T10:00:00+09:00", "action": "prescribe", "drug": {"categories": ["psychotropic"]}}),
    Case("kr-covid-psychotropic-banned", KR_COVID, False, "kr-covid-restricted-drugs", (),
         {"at": "2021-11-02T10:00:00+09:00", "action": "prescribe", "drug": {"categories": ["psychotropic"]}}),
    Case("kr-covid-delivery", KR_COVID, True, "kr-covid-delivery", ("pharmacist_patient_agreement_required",),
         {"at": "2022-05-02T10:00:00+09:00", "action": "deliver", "patient": pat(None)}),
    Case("kr-covid-last-day-first-visit", KR_COVID, True, "kr-covid-consult", (),
         {"at": "2023-05-31T23:00:00+09:00", "patient": pat(None)}, "kr-2020-covid-temporary"),
    # --- KR pilot June 2023 ---------------------------------------------
    Case("kr-pilot-first-day-adult-first-visit", KR_PILOT, False, "default-deny", (),
         {"at": "2023-06-01T10:00:00+09:00", "patient": pat(None)}, "kr-2023-06-pilot"),
    Case("kr-pilot-revisit-10-days", KR_PILOT, True, "kr-pilot-revisit", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(10)}),
    Case("kr-pilot-revisit-31-days-acute", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(31)}),
    Case("kr-pilot-chronic-300-days", KR_PILOT, True, "kr-pilot-revisit", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(300, chronic=True)}),
    Case("kr-pilot-chronic-400-days", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(400, chronic=True)}),
    Case("kr-pilot-other-condition", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(10, cond=False)}),
    Case("kr-pilot-other-institution", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(10, inst=False)}),
    Case("kr-pilot-island-first-visit", KR_PILOT, True, "kr-pilot-first-visit-vulnerable", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(None, groups=["island_remote"])}),
    Case("kr-pilot-ltc-70-first-visit", KR_PILOT, True, "kr-pilot-first-visit-vulnerable", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(None, age=70, groups=["long_term_care"])}),
    Case("kr-pilot-ltc-60-not-eligible", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T10:00:00+09:00", "patient": pat(None, age=60, groups=["long_term_care"])}),
    Case("kr-pilot-minor-night-consult", KR_PILOT, True, "kr-pilot-minor-night-consult", (),
         {"at": "2023-07-05T21:00:00+09:00", "patient": pat(None, age=10)}),
    Case("kr-pilot-minor-night-no-prescription", KR_PILOT, False, "kr-pilot-minor-night-no-prescription", (),
         {"at": "2023-07-05T21:00:00+09:00", "action": "prescribe", "patient": pat(None, age=10)}),
    Case("kr-pilot-minor-weekday-daytime", KR_PILOT, False, "default-deny", (),
         {"at": "2023-07-05T14:00:00+09:00", "patient": pat(None, age=10)}),
    Case("kr-pilot-minor-chuseok-holiday", KR_PILOT, True, "kr-pilot-minor-night-consult", (),
         {"at": "2023-09-28T14:00:00+09:00", "patient": pat(None, age=10)}),
    Case("kr-pilot-hospital-denied", KR_PILOT, False, "kr-pilot-hospital-level", (),
         {"at": "2023-07-05T10:00:00+09:00", "provider": {"institution_level": "hospital"}}),
    Case("kr-pilot-hospital-rare-disease", KR_PILOT, True, "kr-pilot-revisit", (),
         {"at": "2023-07-05T10:00:00+09:00", "provider": {"institution_level": "hospital"},
          "patient": pat(200, chronic=True, groups=["rare_disease"])}),
    Case("kr-pilot-audio-obligation", KR_PILOT, True, "kr-pilot-audio-exception", ("video_impossible_documented",),
         {"at": "2023-07-05T10:00:00+09:00", "mode": "audio"}),
    Case("kr-pilot-chat-denied", KR_PILOT, False, "kr-pilot-no-text-only", (),
         {"at": "2023-07-05T10:00:00+09:00", "mode": "chat"}),
    Case("kr-pilot-cap-31-percent", KR_PILOT, False, "kr-pilot-institution-cap", (),
         {"at": "2023-07-05T10:00:00+09:00", "provider": {"telemedicine_share": 0.31}}),
    Case("kr-pilot-cap-at-30-percent", KR_PILOT, False, "kr-pilot-institution-cap", (),
         {"at": "2023-07-05T10:00:00+09:00", "provider": {"telemedicine_share": 0.30}}),
    Case("kr-pilot-cap-29-percent", KR_PILOT, True, "kr-pilot-revisit", (),
         {"at": "2023-07-05T10:00:00+09:00", "provider": {"telemedicine_share": 0.29}}),
    Case("kr-pilot-narcotic-denied", KR_PILOT, False, "kr-pilot-restricted-drugs", (),
         {"at": "2023-07-05T10:00:00+09:00", "action": "prescribe", "drug": {"categories": ["narcotic"]}}),
    Case("kr-pilot-emergency-contraceptive-not-yet-banned", KR_PILOT, True, "kr-pilot-revisit", (),
         {"at": "2023-07-05T10:00:00+09:00", "action": "prescribe",
          "drug": {"categories": ["emergency_contraceptive"]}}),
    Case("kr-pilot-delivery-not-vulnerable", KR_PILOT, False, "kr-pilot-delivery-groups", (),
         {"at": "2023-07-05T10:00:00+09:00", "action": "deliver"}),
    Case("kr-pilot-delivery-disabled", KR_PILOT, True, "kr-pilot-first-visit-vulnerable",
         ("pharmacist_patient_agreement_required",),
         {"at": "2023-07-05T10:00:00+09:00", "action": "deliver", "patient": pat(None, groups=["disabled"])}),
    # --- KR expansion December 2023 -------------------------------------
    Case("kr-pilot-last-day-adult-night", KR_PILOT, False, "default-deny", (),
         {"at": "2023-12-14T20:00:00+09:00", "patient": pat(None)}, "kr-2023-06-pilot"),
    Case("kr-exp-first-day-adult-night", KR_EXP, True, "kr-exp-first-visit-night-holiday", (),
         {"at": "2023-12-15T20:00:00+09:00", "patient": pat(None)}, "kr-2023-12-expansion"),
    Case("kr-exp-friday-1759", KR_EXP, False, "default-deny", (),
         {"at": "2023-12-15T17:59:00+09:00", "patient": pat(None)}),
    Case("kr-exp-saturday-morning", KR_EXP, True, "kr-exp-first-visit-night-holiday", (),
         {"at": "2023-12-16T10:00:00+09:00", "patient": pat(None)}),
    Case("kr-exp-seollal-2024-02-09", KR_EXP, True, "kr-exp-first-visit-night-holiday", (),
         {"at": "2024-02-09T14:00:00+09:00", "patient": pat(None)}),
    Case("kr-exp-weekday-2024-02-08", KR_EXP, False, "default-deny", (),
         {"at": "2024-02-08T14:00:00+09:00", "patient": pat(None)}),
    Case("kr-exp-revisit-6-months-any-condition", KR_EXP, True, "kr-exp-revisit-6-months", (),
         {"at": "2024-01-10T10:00:00+09:00", "patient": pat(184, cond=False)}),
    Case("kr-exp-revisit-beyond-6-months", KR_EXP, False, "default-deny", (),
         {"at": "2024-01-10T10:00:00+09:00", "patient": pat(185, cond=False)}),
    Case("kr-exp-underserved-weekday", KR_EXP, True, "kr-exp-first-visit-groups", (),
         {"at": "2024-01-10T10:00:00+09:00", "patient": pat(None, groups=["underserved_area"])}),
    Case("kr-exp-days-supply-91", KR_EXP, False, "kr-exp-days-supply-90", (),
         {"at": "2024-01-10T10:00:00+09:00", "action": "prescribe", "drug": {"days_supply": 91}}),
    Case("kr-exp-days-supply-90", KR_EXP, True, "kr-exp-revisit-6-months", (),
         {"at": "2024-01-10T10:00:00+09:00", "action": "prescribe", "drug": {"days_supply": 90}}),
    Case("kr-exp-emergency-contraceptive", KR_EXP, False, "kr-exp-restricted-drugs", (),
         {"at": "2023-12-15T10:00:00+09:00", "action": "prescribe",
          "drug": {"categories": ["emergency_contraceptive"]}}),
    Case("kr-exp-minor-night-prescription-now-allowed", KR_EXP, True, "kr-exp-first-visit-night-holiday", (),
         {"at": "2024-01-10T21:00:00+09:00", "action": "prescribe", "patient": pat(None, age=10)}),
    Case("kr-exp-delivery-ltc", KR_EXP, True, "kr-exp-delivery-agreement", ("pharmacist_patient_agreement_required",),
         {"at": "2024-01-10T10:00:00+09:00", "action": "deliver",
          "patient": pat(None, age=70, groups=["long_term_care"])}),
    Case("kr-exp-contract-example", KR_EXP, True, "kr-exp-revisit-6-months", (), {}, "kr-2023-12-expansion"),
    # --- KR crisis 2024-02-23 -------------------------------------------
    Case("kr-crisis-hospital-first-visit", KR_CRISIS, True, "kr-crisis-all-patients", (),
         {"at": "2024-02-23T10:00:00+09:00", "patient": pat(None), "provider": {"institution_level": "hospital"}},
         "kr-2024-02-crisis"),
    Case("kr-crisis-no-cap", KR_CRISIS, True, "kr-crisis-all-patients", (),
         {"at": "2024-06-03T10:00:00+09:00", "provider": {"telemedicine_share": 0.6}}),
    Case("kr-crisis-obesity-before-ban", KR_CRISIS, True, "kr-crisis-all-patients", (),
         {"at": "2024-12-01T10:00:00+09:00", "action": "prescribe", "drug": {"atc": "A08AB01"}}),
    Case("kr-crisis-obesity-banned", KR_CRISIS, False, "kr-crisis-obesity-drugs", (),
         {"at": "2024-12-02T10:00:00+09:00", "action": "prescribe", "drug": {"atc": "A08AB01"}}),
    Case("kr-crisis-emergency-contraceptive", KR_CRISIS, False, "kr-crisis-restricted-drugs", (),
         {"at": "2024-06-03T10:00:00+09:00", "action": "prescribe",
          "drug": {"categories": ["emergency_contraceptive"]}}),
    Case("kr-crisis-delivery-still-limited", KR_CRISIS, False, "kr-crisis-delivery-groups", (),
         {"at": "2024-06-03T10:00:00+09:00", "action": "deliver"}),
    # --- KR after the crisis ---------------------------------------------
    Case("kr-crisis-last-day-hospital", KR_CRISIS, True, "kr-crisis-all-patients", (),
         {"at": "2025-10-26T10:00:00+09:00", "provider": {"institution_level": "hospital"}}),
    Case("kr-post-hospital-denied", KR_POST, False, "kr-post-crisis-hospital-level", (),
         {"at": "2025-10-27T10:00:00+09:00", "provider": {"institution_level": "hospital"}}, "kr-2025-10-post-crisis"),
    Case("kr-post-cap", KR_POST, False, "kr-post-crisis-institution-cap", (),
         {"at": "2025-11-03T10:00:00+09:00", "provider": {"telemedicine_share": 0.35}}),
    Case("kr-post-first-visit-clinic", KR_POST, True, "kr-post-crisis-patients", (),
         {"at": "2025-11-03T10:00:00+09:00", "patient": pat(None)}),
    # --- KR amended Medical Service Act ---------------------------------
    Case("kr-msa-first-visit-uncovered", KR_NEW, False, "default-deny", (),
         {"at": "2027-01-04T10:00:00+09:00", "patient": pat(None)}, "kr-2027-msa-amended"),
    Case("kr-msa-revisit", KR_NEW, True, "kr-msa-revisit", ("explain_telemedicine_limits",),
         {"at": "2027-01-04T10:00:00+09:00"}),
    Case("kr-msa-narcotic-denied", KR_NEW, False, "kr-msa-narcotics", (),
         {"at": "2027-01-04T10:00:00+09:00", "action": "prescribe", "drug": {"categories": ["narcotic"]}}),
    Case("kr-msa-narcotic-rare-disease", KR_NEW, True, "kr-msa-revisit", ("electronic_prescription_required",),
         {"at": "2027-01-04T10:00:00+09:00", "action": "prescribe", "drug": {"categories": ["narcotic"]},
          "patient": pat(10, groups=["rare_disease"])}),
    Case("kr-msa-delivery-ltc", KR_NEW, True, "kr-msa-revisit", (),
         {"at": "2027-01-04T10:00:00+09:00", "action": "deliver", "patient": pat(10, groups=["long_term_care"])}),
    Case("kr-record-consent", KR_MSA, True, "kr-record-consent", ("all_participants_consent",),
         {"action": "record"}),
    Case("kr-subdivision-falls-back", KR_EXP, True, "kr-exp-revisit-6-months", (),
         {"jurisdiction": "KR-11"}, "kr-2023-12-expansion"),
    # --- JP -------------------------------------------------------------
    Case("jp-2019-first-visit", JP_97, False, "default-deny", (),
         {"jurisdiction": "JP", "at": "2019-05-07T10:00:00+09:00", "patient": pat(None)}),
    Case("jp-2019-revisit-video", JP_97, True, "jp-2015-video-consult", (),
         {"jurisdiction": "JP", "at": "2019-05-07T10:00:00+09:00"}),
    Case("jp-0410-first-visit-phone", JP_0410, True, "jp-0410-consult", (),
         {"jurisdiction": "JP", "at": "2021-05-06T10:00:00+09:00", "mode": "audio", "patient": pat(None)}),
    Case("jp-0410-first-visit-psychotropic", JP_0410, False, "jp-0410-first-visit-narcotics", (),
         {"jurisdiction": "JP", "at": "2021-05-06T10:00:00+09:00", "action": "prescribe", "patient": pat(None),
          "drug": {"categories": ["psychotropic"]}}),
    Case("jp-0410-first-visit-8-days", JP_0410, False, "jp-0410-first-visit-7-days", (),
         {"jurisdiction": "JP", "at": "2021-05-06T10:00:00+09:00", "action": "prescribe", "patient": pat(None),
          "drug": {"days_supply": 8}}),
    Case("jp-0410-first-visit-7-days", JP_0410, True, "jp-0410-prescribe", (),
         {"jurisdiction": "JP", "at": "2021-05-06T10:00:00+09:00", "action": "prescribe", "patient": pat(None),
          "drug": {"days_supply": 7}}),
    Case("jp-0410-last-day-phone", JP_0410, True, "jp-0410-consult", (),
         {"jurisdiction": "JP", "at": "2023-07-31T10:00:00+09:00", "mode": "audio", "patient": pat(None)}),
    Case("jp-2022-phone-uncovered", JP_22, False, "default-deny", (),
         {"jurisdiction": "JP", "at": "2023-08-01T10:00:00+09:00", "mode": "audio", "patient": pat(None)}),
    Case("jp-2022-first-visit-video", JP_22, True, "jp-2022-video-consult", ("pre_consultation_required",),
         {"jurisdiction": "JP", "at": "2024-04-01T10:00:00+09:00", "patient": pat(None)}),
    Case("jp-2022-chat", JP_22, False, "jp-2022-no-text-only", (),
         {"jurisdiction": "JP", "at": "2024-04-01T10:00:00+09:00", "mode": "chat"}),
    Case("jp-2022-revisit-psychotropic-ok", JP_22, True, "jp-2022-prescribe", (),
         {"jurisdiction": "JP", "at": "2024-04-01T10:00:00+09:00", "action": "prescribe",
          "drug": {"categories": ["psychotropic"]}}),
    Case("jp-2022-delivery", JP_22, True, "jp-2022-delivery", ("online_medication_guidance",),
         {"jurisdiction": "JP", "at": "2024-04-01T10:00:00+09:00", "action": "deliver"}),
    # --- CN -------------------------------------------------------------
    Case("cn-first-visit-denied", CN_18, False, "cn-follow-up-only", (),
         {"jurisdiction": "CN", "at": "2024-04-01T10:00:00+08:00", "patient": pat(None)}),
    Case("cn-follow-up-consult", CN_18, True, "cn-follow-up-permit", (),
         {"jurisdiction": "CN", "at": "2024-04-01T10:00:00+08:00", "patient": pat(30, inst=False)}),
    Case("cn-psychotropic-denied", CN_18, False, "cn-no-special-drugs", (),
         {"jurisdiction": "CN", "at": "2024-04-01T10:00:00+08:00", "action": "prescribe",
          "drug": {"categories": ["psychotropic"]}}),
    Case("cn-prescribe-pharmacist-review", CN_18, True, "cn-pharmacist-review", ("pharmacist_review_required",),
         {"jurisdiction": "CN", "at": "2024-04-01T10:00:00+08:00", "action": "prescribe"}),
    Case("cn-child-under-6", CN_18, True, "cn-young-children", ("guardian_present_required",),
         {"jurisdiction": "CN", "at": "2024-04-01T10:00:00+08:00", "action": "prescribe", "patient": pat(10, age=4)}),
    Case("cn-before-measures", CN_18, False, "default-deny", (),
         {"jurisdiction": "CN", "at": "2018-09-13T10:00:00+08:00"}, None),
    # --- DE -------------------------------------------------------------
    Case("de-remote-consult", DE_18, True, "de-remote-treatment",
         ("explain_telemedicine_limits", "state_medical_chamber_rules_apply"),
         {"jurisdiction": "DE", "at": "2024-03-04T10:00:00+01:00", "patient": pat(None)}),
    Case("de-e-rezept-2024", DE_18, True, "de-e-rezept", ("electronic_prescription_required",),
         {"jurisdiction": "DE", "at": "2024-01-02T10:00:00+01:00", "action": "prescribe"}),
    Case("de-record-all-party", DE_18, True, "de-record-consent", ("all_participants_consent",),
         {"jurisdiction": "DE", "at": "2024-03-04T10:00:00+01:00", "action": "record"}),
    Case("de-delivery-uncovered", DE_18, False, "default-deny", (),
         {"jurisdiction": "DE", "at": "2024-03-04T10:00:00+01:00", "action": "deliver"}),
    Case("de-before-2018", DE_18, False, "default-deny", (),
         {"jurisdiction": "DE", "at": "2018-05-10T10:00:00+02:00"}, None),
    # --- GB -------------------------------------------------------------
    Case("uk-alias-consult", GB_21, True, "gb-remote-consultation", (),
         {"jurisdiction": "UK", "at": "2024-03-04T10:00:00+00:00"}, "gb-2021-gmc-remote-prescribing"),
    Case("gb-controlled-without-records", GB_21, False, "gb-controlled-needs-records", (),
         {"jurisdiction": "GB", "at": "2024-03-04T10:00:00+00:00", "action": "prescribe", "patient": pat(None),
          "drug": {"categories": ["controlled"]}}),
    Case("gb-controlled-with-records", GB_21, True, "gb-controlled-records-check", ("medical_records_access_required",),
         {"jurisdiction": "GB", "at": "2024-03-04T10:00:00+00:00", "action": "prescribe",
          "drug": {"categories": ["controlled"]}}),
    # --- SG -------------------------------------------------------------
    Case("sg-first-time-video", SG_23, True, "sg-remote-provision", (),
         {"jurisdiction": "SG", "at": "2024-03-04T10:00:00+08:00", "patient": pat(None),
          "provider": {"licensed_in": ["SG"]}}),
    Case("sg-first-time-audio", SG_23, False, "sg-first-time-video-only", (),
         {"jurisdiction": "SG", "at": "2024-03-04T10:00:00+08:00", "mode": "audio", "patient": pat(None),
          "provider": {"licensed_in": ["SG"]}}),
    Case("sg-returning-audio", SG_23, True, "sg-remote-provision", (),
         {"jurisdiction": "SG", "at": "2024-03-04T10:00:00+08:00", "mode": "audio",
          "provider": {"licensed_in": ["SG"]}}),
    Case("sg-unlicensed", SG_23, False, "sg-hcsa-licence", (),
         {"jurisdiction": "SG", "at": "2024-03-04T10:00:00+08:00", "provider": {"licensed_in": ["KR"]}}),
    Case("sg-before-phase-2", SG_23, False, "default-deny", (),
         {"jurisdiction": "SG", "at": "2023-06-25T10:00:00+08:00", "provider": {"licensed_in": ["SG"]}}, None),
    # --- US -------------------------------------------------------------
    Case("us-ca-licensed", US_LIC, True, "us-telehealth", (),
         {"jurisdiction": "US-CA", "at": "2024-06-03T10:00:00-07:00", "provider": {"licensed_in": ["US-CA"]}},
         "us-ca"),
    Case("us-ca-unlicensed", US_LIC, False, "us-licensed-in-patient-state", (),
         {"jurisdiction": "US-CA", "at": "2024-06-03T10:00:00-07:00", "provider": {"licensed_in": ["US-NV"]}}),
    Case("us-ca-controlled-flexibilities", US_FED, True, "us-dea-telemedicine-flexibilities",
         ("video_required", "epcs_two_factor_required"),
         {"jurisdiction": "US-CA", "at": "2024-06-03T10:00:00-07:00", "action": "prescribe", "patient": pat(None),
          "provider": {"licensed_in": ["US-CA"]}, "drug": {"categories": ["controlled"]}}),
    Case("us-ca-controlled-last-flexibility-day", US_FED, True, "us-dea-telemedicine-flexibilities",
         ("video_required",),
         {"jurisdiction": "US-CA", "at": "2027-01-01T05:00:00Z", "action": "prescribe", "patient": pat(None),
          "provider": {"licensed_in": ["US-CA"]}, "drug": {"categories": ["controlled"]}}),
    Case("us-ca-controlled-after-flexibilities", US_FED, False, "us-ryan-haight-in-person", (),
         {"jurisdiction": "US-CA", "at": "2027-01-01T10:00:00-08:00", "action": "prescribe", "patient": pat(None),
          "provider": {"licensed_in": ["US-CA"]}, "drug": {"categories": ["controlled"]}}),
    Case("us-ca-controlled-after-in-person", US_FED, True, "us-epcs-two-factor", ("epcs_two_factor_required",),
         {"jurisdiction": "US-CA", "at": "2027-06-01T10:00:00-07:00", "action": "prescribe",
          "provider": {"licensed_in": ["US-CA"]}, "drug": {"categories": ["controlled"]}}),
    Case("us-ca-record-all-party", US_CA, True, "us-ca-record-all-party", ("all_participants_consent",),
         {"jurisdiction": "US-CA", "at": "2024-06-03T10:00:00-07:00", "action": "record"}),
    Case("us-ca-physician-consultation", US_CA, True, "us-ca-physician-consultation", (),
         {"jurisdiction": "US-CA", "at": "2024-06-03T10:00:00-07:00", "participants": "doctor-doctor",
          "provider": {"licensed_in": ["US-NV"]}}),
    Case("us-ny-waiver", US_NY, True, "us-telehealth", (),
         {"jurisdiction": "US-NY", "at": "2020-05-01T10:00:00-04:00", "provider": {"licensed_in": ["US-NJ"]}}, "us-ny"),
    Case("us-ny-after-waiver", US_NY, False, "us-ny-licensure", (),
         {"jurisdiction": "US-NY", "at": "2021-07-01T10:00:00-04:00", "provider": {"licensed_in": ["US-NJ"]}}),
    Case("us-tx-licensed", US_TX, True, "us-telehealth", (),
         {"jurisdiction": "US-TX", "at": "2024-06-03T10:00:00-05:00", "provider": {"licensed_in": ["US-TX"]}}, "us-tx"),
    Case("us-tx-unlicensed", US_TX, False, "us-licensed-in-patient-state", (),
         {"jurisdiction": "US-TX", "at": "2024-06-03T10:00:00-05:00", "provider": {"licensed_in": ["US-CA"]}}),
    Case("us-tx-record-one-party", US_TX, True, "us-record-one-party", ("participant_consent",),
         {"jurisdiction": "US-TX", "at": "2024-06-03T10:00:00-05:00", "action": "record"}),
    Case("us-without-state", US_FED, False, "us-state-required", (),
         {"jurisdiction": "US", "at": "2024-06-03T10:00:00-04:00", "provider": {"licensed_in": ["US-CA"]}}),
    Case("us-state-without-rule-set", US_LIC, False, "default-deny", (),
         {"jurisdiction": "US-FL", "at": "2024-06-03T10:00:00-04:00", "provider": {"licensed_in": ["US-FL"]}}, None),
    # --- unknown ----------------------------------------------------------
    Case("unknown-jurisdiction", "deny-by-default (issue 6 §3)", False, "default-deny", (),
         {"jurisdiction": "ZZ"}, None),
]


def test_case_table_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_policy_case(case: Case) -> None:
    decision = ENGINE.decide(ctx(**case.ctx))
    fired = [r.rule for r in decision.reasons]
    assert decision.allowed is case.allowed, (case.source, fired, decision.to_json())
    if case.rule is not None:
        assert case.rule in fired, (case.source, fired)
    for obligation in case.obligations:
        assert obligation in decision.obligations, (case.source, decision.obligations)
    if not case.allowed:
        assert decision.obligations == ()
    if case.rule_set != "*":
        assert decision.rule_set_id == case.rule_set, case.source
