"""``pal audit``: check a project's invariants in the database after a run (load, faults, prod).

    pal audit --database-url URL --project P [--client-log FILE] [--trainer-log FILE]

Checks, each printed with its figures; any violation is printed plainly and the exit code is 1:

- budget: ``budget_spent`` equals the tasks issued (charged once each) and stays <= ``budget_cap``;
- redundancy: no task has more live answers than its redundancy; its count and its slots agree;
- duplicates: no two answers share an idempotency key, no slot or (task, annotator) answered twice,
  no edge stored twice, no edge retracted twice;
- answer edges: every live answer's edges are exactly (reference, c, -1 if c is an outlier else +1)
  over the task's candidates; "can't tell" has none; an undone answer's edges are all retracted;
- client log (JSONL of acknowledged answers, as the load generator writes): every acknowledged
  answer is stored with the edges it was acknowledged with, replays name the same answer, and the
  stored answer edges are exactly the sum over the acknowledged answers (nothing lost, nothing extra);
- edge feed: what the trainer consumed equals every edge below its final cursor. With
  ``--trainer-log`` (a feed consumer's JSONL of pages ``{"cursor", "ids"}``) the edge ids are compared
  one by one; without it, the newest embedding version's ``edges_seen`` is compared with the number of
  edges below its ``cursor`` (the trainer reports both in its metrics).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pal.cli_parser import Parser
from pal.core.edges import EdgeKind
from pal.wire import parse_cursor


@dataclass
class AuditReport:
    project_id: int
    checks: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def check(self, name: str, problems: list[str], detail: str) -> None:
        """Record one check: its figures, and each problem as a violation naming the check."""
        self.checks[name] = ("ok" if not problems else f"FAILED ({len(problems)})") + f": {detail}"
        self.violations.extend(f"{name}: {p}" for p in problems)

    def render(self) -> str:
        lines = [f"audit of project {self.project_id}"]
        lines += [f"  {name:14s} {text}" for name, text in self.checks.items()]
        if self.violations:
            lines.append(f"{len(self.violations)} violation(s):")
            lines += [f"  VIOLATION {v}" for v in self.violations[:200]]
            if len(self.violations) > 200:
                lines.append(f"  ... and {len(self.violations) - 200} more")
        else:
            lines.append("all checks passed")
        return "\n".join(lines)


def _sample(items: list[Any], n: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")


def _project_id(conn: Connection, ref: str) -> int:
    row = None
    if ref.isdigit():
        row = conn.execute(sa.text("SELECT id FROM projects WHERE id = :p"), {"p": int(ref)}).first()
    if row is None:
        row = conn.execute(sa.text("SELECT id FROM projects WHERE name = :p"), {"p": ref}).first()
    if row is None:
        raise SystemExit(f"pal audit: no project {ref!r}")
    return int(row[0])


def _as_list(value: Any) -> list[int]:
    """JSON columns come back decoded on PostgreSQL (jsonb) and as text on SQLite via raw SQL."""
    if isinstance(value, str):
        value = json.loads(value)
    return [int(v) for v in value or []]


def check_budget(conn: Connection, pid: int, report: AuditReport) -> None:
    cap, spent = conn.execute(sa.text("SELECT budget_cap, budget_spent FROM projects WHERE id = :p"), {"p": pid}).one()
    tasks = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE project_id = :p"), {"p": pid}).scalar_one()
    problems = []
    if spent != tasks:
        problems.append(f"budget_spent is {spent} but {tasks} tasks were issued (each task is charged once)")
    if spent > cap:
        problems.append(f"budget_spent {spent} exceeds budget_cap {cap}")
    report.check("budget", problems, f"{tasks} tasks charged, spent {spent} of cap {cap}")


def check_redundancy(conn: Connection, pid: int, report: AuditReport) -> None:
    rows = conn.execute(sa.text(
        """
        SELECT t.id, t.redundancy, t.answers_count,
               (SELECT count(*) FROM answers a WHERE a.task_id = t.id AND a.undone_at IS NULL) AS live,
               (SELECT count(*) FROM assignments s WHERE s.task_id = t.id AND s.status = 'answered') AS answered,
               (SELECT count(*) FROM assignments s WHERE s.task_id = t.id) AS slots
          FROM tasks t WHERE t.project_id = :p
        """), {"p": pid}).all()
    over = [f"task {r.id}: {r.live} answers, redundancy {r.redundancy}" for r in rows if r.live > r.redundancy]
    count = [f"task {r.id}: answers_count {r.answers_count} but {r.live} live answers" for r in rows
             if r.answers_count != r.live]
    slots = [f"task {r.id}: {r.answered} slots answered but {r.live} live answers" for r in rows
             if r.answered != r.live]
    nslots = [f"task {r.id}: {r.slots} slots, redundancy {r.redundancy}" for r in rows if r.slots != r.redundancy]
    problems = []
    for kind, found in (("answered beyond redundancy", over), ("answers_count wrong", count),
                        ("slot status wrong", slots), ("slot count wrong", nslots)):
        if found:
            problems.append(f"{len(found)} task(s) {kind}: {_sample(found)}")
    answers = sum(r.live for r in rows)
    complete = sum(1 for r in rows if r.live >= r.redundancy)
    report.check("redundancy", problems, f"{len(rows)} tasks, {answers} live answers, {complete} tasks complete")


def check_duplicates(conn: Connection, pid: int, report: AuditReport) -> None:
    queries = {
        "answers sharing an idempotency key": """
            SELECT annotator_id, idempotency_key, count(*) FROM answers WHERE project_id = :p
             GROUP BY annotator_id, idempotency_key HAVING count(*) > 1""",
        "slots with more than one live answer": """
            SELECT assignment_id, count(*) FROM answers WHERE project_id = :p AND undone_at IS NULL
             GROUP BY assignment_id HAVING count(*) > 1""",
        "annotators answering one task twice": """
            SELECT task_id, annotator_id, count(*) FROM answers WHERE project_id = :p AND undone_at IS NULL
             GROUP BY task_id, annotator_id HAVING count(*) > 1""",
        "edges stored twice": """
            SELECT answer_id, src, dst, kind, count(*) FROM edges WHERE project_id = :p AND answer_id IS NOT NULL
             GROUP BY answer_id, src, dst, kind HAVING count(*) > 1""",
        "edges retracted twice": """
            SELECT retracts_id, count(*) FROM edges WHERE project_id = :p AND kind = 'retract'
             GROUP BY retracts_id HAVING count(*) > 1""",
    }
    problems = []
    for what, sql in queries.items():
        rows = conn.execute(sa.text(sql), {"p": pid}).all()
        if rows:
            problems.append(f"{len(rows)} {what}: {_sample([tuple(r) for r in rows])}")
    n_answers = conn.execute(sa.text("SELECT count(*) FROM answers WHERE project_id = :p"), {"p": pid}).scalar_one()
    n_edges = conn.execute(sa.text("SELECT count(*) FROM edges WHERE project_id = :p"), {"p": pid}).scalar_one()
    report.check("duplicates", problems, f"{n_answers} answers, {n_edges} edge rows")


def check_answer_edges(conn: Connection, pid: int, report: AuditReport) -> dict[int, int]:
    """Each answer's edges against its task; returns live answer id -> its answer-edge count (and
    under key -1 the answer edges that belong to no stored answer)."""
    answers = {
        r.id: r for r in conn.execute(sa.text(
            """
            SELECT a.id, a.outlier_ids, a.cant_tell, a.undone_at IS NOT NULL AS undone,
                   t.reference_id, t.candidate_ids
              FROM answers a JOIN tasks t ON t.id = a.task_id WHERE a.project_id = :p
            """), {"p": pid})
    }
    edges: dict[int, set[tuple[int, int, int]]] = {}
    edge_ids: dict[int, set[int]] = {}
    retracted: set[int] = set()
    orphans: list[int] = []
    rows: Counter[int] = Counter()  # rows, not distinct pairs: a duplicated edge counts twice
    for e in conn.execute(sa.text(
            "SELECT id, answer_id, src, dst, sign, kind, retracts_id FROM edges WHERE project_id = :p"), {"p": pid}):
        if e.kind == EdgeKind.RETRACT:
            retracted.add(int(e.retracts_id))
        elif e.kind == EdgeKind.ANSWER and (e.answer_id is None or e.answer_id not in answers):
            orphans.append(e.id)
        elif e.answer_id is not None:
            edges.setdefault(e.answer_id, set()).add((e.src, e.dst, e.sign))
            edge_ids.setdefault(e.answer_id, set()).add(e.id)
            rows[e.answer_id] += 1
    wrong, unretracted = [], []
    live_counts: dict[int, int] = {}
    for aid, a in answers.items():
        outliers = set(_as_list(a.outlier_ids))
        want = set() if a.cant_tell else {
            (a.reference_id, c, -1 if c in outliers else 1) for c in _as_list(a.candidate_ids)}
        got = edges.get(aid, set())
        if got != want:
            wrong.append(f"answer {aid}: {len(got)} edges stored, {len(want)} expected"
                         + (f", e.g. missing {sorted(want - got)[:2]}" if want - got else "")
                         + (f", e.g. extra {sorted(got - want)[:2]}" if got - want else ""))
        if a.undone and not edge_ids.get(aid, set()) <= retracted:
            unretracted.append(f"answer {aid}")
        if not a.undone:
            live_counts[aid] = rows[aid]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} answer(s) whose edges do not match the task: {_sample(wrong, 3)}")
    if unretracted:
        problems.append(f"{len(unretracted)} undone answer(s) with edges not retracted: {_sample(unretracted)}")
    if orphans:
        problems.append(f"{len(orphans)} answer edge(s) without a stored answer: {_sample(orphans)}")
    report.check("answer edges", problems,
                 f"{len(live_counts)} live answers with {sum(live_counts.values())} edges")
    if orphans:
        live_counts[-1] = len(orphans)  # counted with the stored edges, so the client-log sum sees them
    return live_counts


def check_client_log(conn: Connection, pid: int, log: Path, live: dict[int, int], report: AuditReport) -> None:
    acked: dict[int, dict[str, Any]] = {}
    keys: dict[tuple[int, str], int] = {}
    undone: set[int] = set()
    problems: list[str] = []
    torn = 0
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            torn += 1  # a client killed mid-write: that ack was never complete
            continue
        if "undo" in rec:
            undone.add(int(rec["undo"]))
            continue
        aid = int(rec["answer_id"])
        key = (int(rec["user_id"]), str(rec["key"]))
        if keys.setdefault(key, aid) != aid:
            problems.append(f"line {n}: idempotency key {rec['key']} acknowledged as answers {keys[key]} and {aid}")
        if aid in acked and (acked[aid]["edges"], acked[aid]["task_id"]) != (rec["edges"], rec["task_id"]):
            problems.append(f"line {n}: answer {aid} acknowledged twice with different contents")
        acked.setdefault(aid, rec)
    expected = {aid: rec for aid, rec in acked.items() if aid not in undone}
    stored = {
        r.id: r for r in conn.execute(sa.text(
            "SELECT id, task_id, annotator_id FROM answers WHERE project_id = :p AND undone_at IS NULL"), {"p": pid})
    }
    missing = sorted(set(expected) - set(stored))
    if missing:
        problems.append(f"{len(missing)} acknowledged answer(s) not stored (lost): {_sample(missing)}")
    extra = sorted(set(stored) - set(expected))
    if extra:
        problems.append(f"{len(extra)} stored answer(s) never acknowledged to a client: {_sample(extra)}")
    mismatched = [aid for aid, rec in expected.items() if aid in stored and (
        stored[aid].task_id != rec["task_id"] or stored[aid].annotator_id != rec["user_id"]
        or live.get(aid) != rec["edges"])]
    if mismatched:
        problems.append(f"{len(mismatched)} answer(s) stored differently from their acknowledgement: "
                        f"{_sample(mismatched)}")
    want_edges = sum(int(rec["edges"]) for rec in expected.values())
    have_edges = sum(live.values())
    if want_edges != have_edges:
        problems.append(f"{have_edges} answer edges stored, but acknowledged answers sum to {want_edges}")
    report.check("client log", problems,
                 f"{len(expected)} acknowledged answers summing to {want_edges} edges; {have_edges} stored"
                 + (f"; {torn} torn line(s) ignored" if torn else ""))


def _below(conn: Connection, pid: int, cursor: str) -> list[int]:
    """Ids of the project's edges at or below a feed cursor, in the feed's order."""
    tx, after_id = parse_cursor(cursor)
    if conn.dialect.name == "postgresql":
        sql = """SELECT id FROM edges WHERE project_id = :p
                   AND (txid < (:tx)::text::xid8 OR (txid = (:tx)::text::xid8 AND id <= :id))"""
    else:
        sql = "SELECT id FROM edges WHERE project_id = :p AND id <= :id"
    return [int(i) for i in conn.execute(sa.text(sql), {"p": pid, "tx": tx, "id": after_id}).scalars()]


def check_feed_log(conn: Connection, pid: int, log: Path, report: AuditReport) -> None:
    consumed: list[int] = []
    cursor = "0:0"
    for line in log.read_text().splitlines():
        try:
            page = json.loads(line)
        except json.JSONDecodeError:
            continue  # a consumer killed mid-write re-reads that page after its restart
        consumed.extend(int(i) for i in page["ids"])
        cursor = page["cursor"]
    problems = []
    twice = [i for i, n in Counter(consumed).items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} edge(s) consumed more than once: {_sample(sorted(twice))}")
    below = set(_below(conn, pid, cursor))
    got = set(consumed)
    if below - got:
        problems.append(f"{len(below - got)} edge(s) below the final cursor {cursor} never consumed: "
                        f"{_sample(sorted(below - got))}")
    if got - below:
        problems.append(f"{len(got - below)} consumed edge(s) not in the database below the cursor: "
                        f"{_sample(sorted(got - below))}")
    total = conn.execute(sa.text("SELECT count(*) FROM edges WHERE project_id = :p"), {"p": pid}).scalar_one()
    report.check("edge feed", problems, f"consumer log: {len(consumed)} consumed up to cursor {cursor}; "
                 f"{len(below)} edges below it, {total - len(below)} of {total} beyond it")


def check_feed_metrics(conn: Connection, pid: int, report: AuditReport) -> None:
    row = conn.execute(sa.text(
        "SELECT version, metrics FROM embedding_versions WHERE project_id = :p ORDER BY version DESC LIMIT 1"),
        {"p": pid}).first()
    if row is None:
        report.checks["edge feed"] = "skipped: no embedding version and no --trainer-log"
        return
    metrics = row.metrics if isinstance(row.metrics, dict) else json.loads(row.metrics)
    cursor, seen = metrics.get("cursor"), metrics.get("edges_seen")
    if cursor is None or seen is None:
        report.checks["edge feed"] = f"skipped: version {row.version} reports no cursor/edges_seen"
        return
    below = len(_below(conn, pid, str(cursor)))
    total = conn.execute(sa.text("SELECT count(*) FROM edges WHERE project_id = :p"), {"p": pid}).scalar_one()
    problems = [] if below == seen else [
        f"version {row.version} says {seen} edges consumed up to cursor {cursor}, the database has {below}"]
    report.check("edge feed", problems, f"trainer version {row.version}: {seen} edges seen up to cursor {cursor}; "
                 f"{total - below} of {total} beyond it")


def run_audit(*, database_url: str, project: str, client_log: Path | None = None,
              trainer_log: Path | None = None) -> AuditReport:
    """Every check on one project, in one read-only repeatable-read snapshot."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            pid = _project_id(conn, project)
            report = AuditReport(project_id=pid)
            check_budget(conn, pid, report)
            check_redundancy(conn, pid, report)
            check_duplicates(conn, pid, report)
            live = check_answer_edges(conn, pid, report)
            if client_log is not None:
                check_client_log(conn, pid, client_log, live, report)
            if trainer_log is not None:
                check_feed_log(conn, pid, trainer_log, report)
            else:
                check_feed_metrics(conn, pid, report)
            conn.rollback()
    finally:
        engine.dispose()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="pal audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="default: PAL_DATABASE_URL")
    parser.add_argument("--project", required=True, help="project id or name")
    parser.add_argument("--client-log", type=Path, default=None, help="JSONL of acknowledged answers")
    parser.add_argument("--trainer-log", type=Path, default=None,
                        help="JSONL of consumed feed pages; default: the newest embedding version's metrics")
    args = parser.parse_args(argv)
    url = args.database_url
    if url is None:
        from server.config import get_settings

        url = get_settings().database_url
    for path in (args.client_log, args.trainer_log):
        if path is not None and not path.exists():
            parser.error(f"no such file: {path}")
    report = run_audit(database_url=url, project=args.project, client_log=args.client_log,
                       trainer_log=args.trainer_log)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
