"""Imports every model module so metadata is complete (migrations, create_all in tests)."""

from clinic.db import clinical, encounters, models, scheduling  # noqa: F401
from clinic.db import notes as _notes  # noqa: F401
from clinic.db import payments as _payments  # noqa: F401
from clinic.db import video as _video  # noqa: F401
from prescriptions import models as _rx  # noqa: F401
