"""An admin's view of a project's annotators: estimated accuracy, and excluding or including one."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import AdminProject, DbSession
from server.schemas_stats import AnnotatorQualityPublic, ExclusionPublic
from server.services import annotator_quality, exclusions

router = APIRouter(prefix="/projects/{project_id}/annotators", tags=["annotators"])


def _public(result: exclusions.Exclusion) -> ExclusionPublic:
    return ExclusionPublic(user_id=result.user_id, excluded=result.excluded_at is not None,
                           excluded_at=result.excluded_at, retracted_edges=result.retracted_edges,
                           released_leases=result.released_leases)


@router.get("/quality", response_model=list[AnnotatorQualityPublic])
def quality(project: AdminProject, db: DbSession) -> list[AnnotatorQualityPublic]:
    """Each annotator's estimated accuracy on pair marks with a 90 % interval, from agreement with the
    others' answers and gold controls; flagged ones first. Members with no answers are listed too."""
    return annotator_quality.annotator_quality(db, project.id)


@router.post("/{user_id}/exclude", response_model=ExclusionPublic)
def exclude(project: AdminProject, user_id: int, db: DbSession) -> ExclusionPublic:
    """Retract every live answer edge of the member in this project (retract rows in the edge feed, as
    an undo writes), expire the grids they hold, and refuse their claims and answers from now on
    (403 ``annotator_excluded``). The budget their grids used stays spent. Idempotent: excluding again
    retracts whatever is still live."""
    return _public(exclusions.exclude(db, project_id=project.id, user_id=user_id))


@router.post("/{user_id}/include", response_model=ExclusionPublic)
def include(project: AdminProject, user_id: int, db: DbSession) -> ExclusionPublic:
    """Accept the member's claims and answers again. Edges retracted by the exclusion stay retracted."""
    return _public(exclusions.include(db, project_id=project.id, user_id=user_id))
