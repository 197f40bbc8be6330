"""Printable documents (visit summary, medical certificate, prescription, receipt) as PDF."""

from clinic.documents.formatting import (
    is_valid_prescription_id,
    money,
    prescription_id,
    qr_data_uri,
    qr_svg,
)
from clinic.documents.models import (
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
)
from clinic.documents.render import (
    render_document,
    render_document_async,
    render_html,
    render_pdf,
    render_pdf_async,
    warm_up,
)

__all__ = [
    "CertificateDoc",
    "ClinicianInfo",
    "Diagnosis",
    "Document",
    "OrgInfo",
    "PatientInfo",
    "PrescriptionDoc",
    "PrescriptionItem",
    "ReceiptDoc",
    "ReceiptLine",
    "VisitSummaryDoc",
    "is_valid_prescription_id",
    "money",
    "prescription_id",
    "qr_data_uri",
    "qr_svg",
    "render_document",
    "render_document_async",
    "render_html",
    "render_pdf",
    "render_pdf_async",
    "warm_up",
]
