from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.support_exports import LabelledProject, make_labelled_project


@pytest.fixture
def labelled_project(db: Session, engine: sa.Engine, database_url: str) -> LabelledProject:
    return make_labelled_project(db, engine, database_url)
