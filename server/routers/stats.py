"""Admin dashboard API: project statistics and the known-cluster browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import AdminUser, DbSession, get_project_for
from server.errors import ApiError
from server.schemas_stats import ClusterItems, ClusterList, ProjectStats
from server.services import stats as stats_service

router = APIRouter(tags=["dashboard"])


@router.get("/projects/{project_id}/stats", response_model=ProjectStats)
def project_stats(project_id: int, db: DbSession, user: AdminUser) -> ProjectStats:
    """Budget, throughput, annotators, graph growth, trainer status and quality curve in one document
    (the dashboard polls it every few seconds)."""
    project = get_project_for(db, user, project_id)
    return stats_service.project_stats(db, project)


@router.get("/projects/{project_id}/clusters", response_model=ClusterList)
def clusters(project_id: int, db: DbSession, user: AdminUser,
             limit: Annotated[int, Query(ge=1, le=500)] = 20) -> ClusterList:
    """The largest known clusters (two or more items joined by + answers), largest first."""
    get_project_for(db, user, project_id)
    return stats_service.cluster_list(db, project_id, limit=limit)


@router.get("/projects/{project_id}/clusters/{item_id}/items", response_model=ClusterItems)
def cluster_items(
    project_id: int, item_id: int, db: DbSession, user: AdminUser,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 48,
) -> ClusterItems:
    """One page of the members of the cluster holding ``item_id`` (a root from the list, or any member)."""
    get_project_for(db, user, project_id)
    page = stats_service.cluster_items(db, project_id, item=item_id, offset=offset, limit=limit)
    if page is None:
        raise ApiError(404, "not_found", f"item {item_id} is not an item of project {project_id}", field="item_id")
    return page
