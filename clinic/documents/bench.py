"""Render timing: ``python -m clinic.documents.bench [runs]`` prints the median per document and locale.

Target: median ≤ 300 ms for a one-page document once the caches are warm.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal

from clinic.documents.formatting import prescription_id, qr_svg
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
from clinic.documents.render import render_document, warm_up


def sample_documents() -> list[Document]:
    org = OrgInfo("서울 한빛의원", "서울특별시 종로구 종로 1", "02-123-4567", "Asia/Seoul", "11100000")
    patient = PatientInfo("김민지", date(1985, 4, 12), "female", "C-000123")
    doctor = ClinicianInfo("이서준", "제12345호", "가정의학과")
    dx = (Diagnosis("I10", "본태성(원발성) 고혈압"),)
    items = (PrescriptionItem("암로디핀 5mg", "1정", "1일 1회", 30, "30정", "경구", "아침 식후"),)
    at = datetime(2025, 3, 4, 5, 30, tzinfo=UTC)
    rx_id = prescription_id(160, 123)
    return [
        VisitSummaryDoc("VS-1", org, patient, doctor, at, "video", "두통", "2주간 두통", "BP 152/96", "고혈압",
                        "재진", dx, items),
        CertificateDoc("MC-1", org, patient, doctor, dx, "약물치료 및 경과관찰이 필요함.", date(2025, 3, 4)),
        PrescriptionDoc(rx_id, org, patient, doctor, items, at, date(2025, 3, 7), qr=qr_svg(rx_id)),
        ReceiptDoc("RC-1", org, patient, at, "KRW", (ReceiptLine("비대면 진찰료", Decimal(15000)),)),
    ]


def main(runs: int = 15) -> None:
    t = time.perf_counter()
    warm_up()
    render_document(sample_documents()[0], locale="ko")
    print(f"first render (cold caches): {(time.perf_counter() - t) * 1000:.0f} ms")
    for doc in sample_documents():
        for locale in ("ko", "en"):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                render_document(doc, locale=locale)
                times.append(time.perf_counter() - t)
            print(f"{type(doc).__name__:16} {locale}  median {statistics.median(times) * 1000:6.0f} ms"
                  f"  max {max(times) * 1000:6.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
