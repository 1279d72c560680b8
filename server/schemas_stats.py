"""Response models of the admin dashboard API: project statistics and the cluster browser.

Every figure is computed on request from the database (a handful of aggregate queries) and from
the server's knowledge graph; nothing here is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from server.schemas import HeldBackOut, ProjectPublic


class BudgetStats(BaseModel):
    cap: int = Field(description="Most tasks that may be issued.")
    spent: int = Field(description="Tasks issued so far (a task is charged once, when issued).")
    remaining: int
    burn_per_hour: float = Field(description="Tasks issued in the last hour.")
    hours_left: float | None = Field(description="remaining / burn_per_hour; None when nothing burns.")
    projected_exhaustion_at: datetime | None = Field(description="When the budget runs out at the current burn rate.")


class HourCount(BaseModel):
    hour: datetime = Field(description="Start of the hour (UTC).")
    answers: int


class ThroughputStats(BaseModel):
    answers_total: int = Field(description="Live answers (undone answers excluded), 'can't tell' included.")
    answers_today: int = Field(description="Since 00:00 UTC.")
    answers_last_hour: int
    cant_tell_total: int
    answers_per_hour: list[HourCount] = Field(description="The last 24 hours, oldest first, zeros included.")
    active_annotators: int = Field(description="Annotators with an answer in the last 15 minutes.")
    annotators_holding_tasks: int = Field(description="Annotators holding an unexpired lease now.")


class AnnotatorStats(BaseModel):
    id: int
    email: str
    name: str
    member: bool = Field(description="A member of the project (admins may answer without being members).")
    answers: int
    answers_today: int
    answers_last_hour: int
    cant_tell: int
    median_seconds: float | None = Field(description="Median time on a grid, from the answers' 'seconds'.")
    gold_checked: int = Field(description="Control pairs (Task.gold) this annotator answered.")
    gold_accuracy: float | None = Field(description="Share of control pairs answered as the gold says.")
    agreement_pairs: int = Field(description="Candidates also answered by another annotator of the same task.")
    agreement: float | None = Field(description="Share of those candidates on which both answers agree.")
    last_answer_at: datetime | None


class GrowthPoint(BaseModel):
    t: datetime = Field(description="End of the bucket (UTC).")
    positive: int = Field(description="Live + edges at t (cumulative, retractions subtracted).")
    negative: int = Field(description="Live - edges at t.")


class GraphStats(BaseModel):
    items: int
    edges: int = Field(description="Live answer edges.")
    positive_edges: int
    negative_edges: int
    items_with_edges: int | None
    known_clusters: int | None = Field(description="Clusters of two or more items implied by + edges.")
    items_in_clusters: int | None
    largest_clusters: list[int] = Field(description="Sizes of the largest known clusters, largest first.")
    cannot_links: int | None
    contradictions: int | None = Field(description="Edges the resolved graph disagrees with.")
    growth: list[GrowthPoint] = Field(description="Live edges over time, at most about 50 points.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Any further figures the graph reports.")


class TrainerStats(BaseModel):
    versions: int = Field(description="Embedding versions published so far.")
    current_version: int | None
    embedding_id: int | None
    created_at: datetime | None
    age_seconds: float | None
    dim: int | None
    n_items: int | None
    answers_at_upload: int | None
    answers_since: int | None = Field(description="Live answers stored after the current version was published.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="The current version's metrics.")


class QualityPoint(BaseModel):
    version: int
    answers_at_upload: int
    created_at: datetime
    knn_accuracy: float | None
    cluster_accuracy: float | None


class OracleStats(BaseModel):
    name: str
    target_match_share: float
    match_rate: float | None = Field(description="Share of + edges among the live answer edges.")
    answer_edges: int


class ProjectStats(BaseModel):
    generated_at: datetime
    project: ProjectPublic
    items: int
    budget: BudgetStats
    throughput: ThroughputStats
    annotators: list[AnnotatorStats]
    graph: GraphStats
    trainer: TrainerStats
    quality: list[QualityPoint] = Field(description="One point per embedding version (the newest 500).")
    oracle: OracleStats
    feed_held_back: HeldBackOut | None = Field(
        default=None, description="Committed edges the feed holds back, and why (PostgreSQL only).")


class ClusterSummary(BaseModel):
    root: int = Field(description="An item of the cluster that names it (any member's id is accepted back).")
    size: int
    sample: list[int] = Field(description="A few member item ids, for thumbnails.")


class ClusterList(BaseModel):
    known_clusters: int
    clusters: list[ClusterSummary] = Field(description="Largest first.")


class ClusterItems(BaseModel):
    root: int
    size: int
    offset: int
    limit: int
    items: list[int] = Field(description="Member item ids in ascending order, one page.")


class AnnotatorQualityPublic(BaseModel):
    """One annotator's estimated accuracy on pair marks (see ``pal.core.annotator_quality``)."""

    user_id: int
    email: str
    name: str
    member: bool = Field(description="A member of the project (admins may answer without being members).")
    excluded: bool = Field(description="An admin excluded them: their edges are retracted, new answers refused.")
    accuracy: float = Field(description="Posterior mean of the share of their marks that are right (prior Beta(4, 1)).")
    low: float = Field(description="Lower end of the 90 % credible interval.")
    high: float = Field(description="Upper end of the 90 % credible interval.")
    decided: int = Field(description="Marks with a verdict: decided by the others' answers, plus gold control pairs.")
    agreed: int = Field(description="Decided marks that agree with the verdict.")
    edges: int = Field(description="Live answer edges (0 once excluded).")
    flagged: bool = Field(description="At least 30 decided marks and the interval's upper end more than 0.1 below "
                                      "the median of the other annotators' estimates.")


class ExclusionPublic(BaseModel):
    user_id: int
    excluded: bool
    excluded_at: datetime | None
    retracted_edges: int = Field(description="Answer edges withdrawn by this call (retract rows appended to the feed).")
    released_leases: int = Field(description="Grids the annotator held, handed back to the pool.")
