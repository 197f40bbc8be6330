from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pypdf import PdfReader

from clinic.documents import (
    CertificateDoc,
    ClinicianInfo,
    Diagnosis,
    Document,
    OrgInfo,
    PatientInfo,
    PrescriptionDoc,
    PrescriptionItem,
    ReceiptDoc,
    ReceiptLine,
    VisitSummaryDoc,
    is_valid_prescription_id,
    money,
    prescription_id,
    qr_data_uri,
    qr_svg,
    render_document,
    render_document_async,
    render_html,
    render_pdf,
)

ORG = OrgInfo("서울 한빛의원", "서울특별시 종로구 종로 1", "02-123-4567", "Asia/Seoul", "11100000")
PAT = PatientInfo("김민지", date(1985, 4, 12), "female", "C-000123")
DOCTOR = ClinicianInfo("이서준", "제12345호", "가정의학과")
DX = (Diagnosis("I10", "본태성(원발성) 고혈압"), Diagnosis("E78.5", "상세불명의 고지질혈증", primary=False))
ITEMS = (PrescriptionItem("암로디핀 5mg", "1정", "1일 1회", 30, "30정", "경구", "아침 식후"),)
AT = datetime(2025, 3, 4, 5, 30, tzinfo=UTC)  # 14:30 in Seoul
RX_ID = prescription_id(160, 123)

VISIT = VisitSummaryDoc("VS-2025-0001", ORG, PAT, DOCTOR, AT, "video", "두통과 어지러움", "2주간 지속된 두통",
                        "혈압 152/96", "고혈압", "생활습관 교정, 2주 후 재진", DX, ITEMS, generated_at=AT)
CERT = CertificateDoc("MC-2025-0001", ORG, PAT, DOCTOR, DX, "약물치료 및 경과관찰이 필요함.", date(2025, 3, 4),
                      period_start=date(2025, 3, 4), period_end=date(2025, 3, 10), generated_at=AT)
RX = PrescriptionDoc(RX_ID, ORG, PAT, DOCTOR, ITEMS, AT, date(2025, 3, 7), qr=qr_svg(RX_ID),
                     substitution_allowed=False, signature_fingerprint="SHA256:AB12CD34", generated_at=AT)
RECEIPT = ReceiptDoc("RC-2025-0001", ORG, PAT, AT, "KRW",
                     (ReceiptLine("비대면 진찰료", Decimal(15000)), ReceiptLine("처방 조제료", Decimal(2500), 2)),
                     insurance_amount=Decimal(14000), paid_amount=Decimal(6000), payment_method="카드",
                     generated_at=AT)


def _text(pdf: bytes) -> tuple[int, str]:
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    return len(reader.pages), "\n".join(p.extract_text() for p in reader.pages)


COMMON_KO = ["김민지", "서울 한빛의원", "VS-2025-0001"]

CASES: list[tuple[Document, list[str], list[str]]] = [
    (VISIT, ["김민지", "본태성(원발성) 고혈압", "I10", "이서준", "두통과 어지러움", "암로디핀 5mg", "2025-03-04 14:30"],
     ["Visit summary", "Chief complaint", "Diagnoses", "Plan", "Prescriptions", "Video visit"]),
    (CERT, ["김민지", "본태성(원발성) 고혈압", "I10", "제12345호", "약물치료 및 경과관찰이 필요함."],
     ["Medical certificate", "Clinical opinion", "Date of issue", "License No.", "Signature or seal"]),
    (RX, ["김민지", "암로디핀 5mg", "1일 1회", RX_ID, "SHA256:AB12CD34"],
     ["Prescription", "Valid until", "Do not substitute", "Signature fingerprint", "Quantity"]),
    (RECEIPT, ["김민지", "비대면 진찰료", "₩20,000", "₩6,000", "카드"],
     ["Receipt", "Total", "Covered by insurance", "Balance due"]),
]


@pytest.mark.parametrize(("doc", "korean", "english"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_korean_content_is_extractable_text(doc: Document, korean: list[str], english: list[str]) -> None:
    pages, text = _text(render_document(doc, locale="en"))
    assert pages >= 1
    for s in korean:
        assert s in text, s
    for s in english:
        assert s in text, s
    assert doc.document_id in text  # footer
    assert "1 / 1" in text or "1 / 2" in text  # page numbers
    assert "서울특별시 종로구 종로 1" in text  # header address


def test_korean_locale_renders_the_same_content() -> None:
    pages, text = _text(render_pdf("visit_summary.html", VISIT, locale="ko"))
    assert pages >= 1
    assert "본태성(원발성) 고혈압" in text and "김민지" in text
    assert "2025년 4월 12일" not in text  # birth date is 1985
    assert "1985년 4월 12일" in text  # long date spelled the Korean way


def test_generation_time_is_in_the_organization_time_zone() -> None:
    html = render_html("receipt.html", replace(RECEIPT, organization=replace(ORG, timezone="America/New_York")),
                       locale="en")
    assert "2025-03-04 00:30 (America/New_York)" in html


def test_long_document_has_several_pages() -> None:
    many = tuple(replace(ITEMS[0], name=f"약품 {i}") for i in range(80))
    pages, text = _text(render_document(replace(VISIT, prescriptions=many), locale="ko"))
    assert pages >= 2
    assert "약품 79" in text and f"2 / {pages}" in text


def test_user_content_is_escaped() -> None:
    html = render_html("visit_summary.html", replace(VISIT, plan="<img src=x onerror=alert(1)>"), locale="en")
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_prescription_qr_is_embedded_as_an_image() -> None:
    html = render_html("prescription.html", RX, locale="ko")
    assert 'src="data:image/svg+xml;base64,' in html
    html2 = render_html("prescription.html", replace(RX, qr=qr_data_uri("x")), locale="ko")
    assert qr_data_uri("x") in html2
    assert qr_svg("hello").startswith("<svg")


async def test_async_render() -> None:
    pdf = await render_document_async(CERT, locale="ko")
    assert "본태성(원발성) 고혈압" in _text(pdf)[1]


def test_prescription_id_check_digits() -> None:
    assert RX_ID == "160.000.000.000.123.76"
    assert is_valid_prescription_id(RX_ID)
    assert not is_valid_prescription_id("160.000.000.000.124.76")
    assert not is_valid_prescription_id("160.000.000.000.123")


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("15000", "KRW", "ko", "₩15,000"),
        ("15000.40", "KRW", "en", "₩15,000"),
        ("1200", "JPY", "en", "¥1,200"),
        ("1200", "JPY", "ko", "JP¥1,200"),
        ("12.5", "USD", "en", "$12.50"),
        ("12.5", "USD", "ko", "US$12.50"),
        ("1234.5", "EUR", "en", "€1,234.50"),
        ("0", "EUR", "ko", "€0.00"),
    ],
)
def test_currency_formatting(amount: str, currency: str, locale: str, expected: str) -> None:
    assert money(Decimal(amount), currency, locale) == expected


def test_receipt_amounts() -> None:
    assert RECEIPT.total == Decimal(20000)
    assert RECEIPT.patient_amount == Decimal(6000)
    assert RECEIPT.balance == Decimal(0)
    usd = replace(RECEIPT, currency="USD", lines=(ReceiptLine("Video consultation", Decimal("49.90")),),
                  insurance_amount=Decimal(0), paid_amount=None)
    _, text = _text(render_document(usd, locale="en"))
    assert "$49.90" in text and "Balance due" not in text


def test_korean_labels_with_the_proposed_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from babel.messages.pofile import read_po

    from clinic.web import i18n

    path = Path(__file__).resolve().parents[2] / "clinic" / "notify" / "ko_strings.po.fragment"
    with path.open("rb") as fh:
        ko = {str(m.id): str(m.string) for m in read_po(fh, locale="ko") if m.id}
    monkeypatch.setattr(i18n, "catalog", lambda locale: ko if locale == "ko" else {})
    _, text = _text(render_document(CERT, locale="ko"))
    assert "진단서" in text and "질병분류기호" in text and "면허번호" in text
    _, text = _text(render_document(CERT, locale="en"))
    assert "Medical certificate" in text and "진단서" not in text
