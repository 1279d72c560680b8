"""Admin dashboard API: project statistics and the known-cluster browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from server.deps import AdminProject, DbSession
from server.errors import ApiError
from server.schemas_stats import ClusterItems, ClusterList, ProjectStats
from server.services import stats as stats_service

router = APIRouter(tags=["dashboard"])


@router.get("/projects/{project_id}/stats", response_model=ProjectStats)
def project_stats(project: AdminProject, db: DbSession) -> ProjectStats:
    """Budget, throughput, annotators, graph growth, trainer status and quality curve in one document
    (the dashboard polls it every few seconds)."""
    return stats_service.project_stats(db, project)


@router.get("/projects/{project_id}/clusters", response_model=ClusterList)
def clusters(project: AdminProject, db: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> ClusterList:
    """The largest known clusters (two or more items joined by + answers), largest first."""
    return stats_service.cluster_list(db, project.id, limit=limit)


@router.get("/projects/{project_id}/clusters/{item_id}/items", response_model=ClusterItems)
def cluster_items(
    project: AdminProject, item_id: int, db: DbSession,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 48,
) -> ClusterItems:
    """One page of the members of the cluster holding ``item_id`` (a root from the list, or any member)."""
    page = stats_service.cluster_items(db, project.id, item=item_id, offset=offset, limit=limit)
    if page is None:
        raise ApiError(404, "not_found", f"item {item_id} is not an item of project {project.id}", field="item_id")
    return page
