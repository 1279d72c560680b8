"""``pal simulate``: simulated annotators that drive a running PAL server over its HTTP API.

Each simulated annotator is a thread with its own account and bearer token and behaves like the
browser page: it loads the project, claims a task, (optionally) fetches the grid's images, thinks,
and posts its answer with a fresh idempotency key; it sometimes re-sends the same POST (a retry
after a lost response), sometimes undoes its last answer and answers again, renews its lease when
it thinks for long, and skips ("can't tell") with a configurable rate. Transport errors and 5xx
answers are retried with the same idempotency key, exactly what the page does.

Where the answers come from
---------------------------
The simulator answers from hidden ground truth that it reads from a SEPARATE source, never from
an annotator-visible route (annotators cannot see labels, and the simulator's annotator clients
are restricted to :data:`ANNOTATOR_ROUTES`; a request outside that set raises):

- ``--labels FILE.npz``: the ``.npz`` the project was imported from (``images``, ``labels``). Item
  ids are matched to rows of the file by their pixels, read with the admin token from
  ``GET /projects/{pid}/items/pixels`` (an admin route). Matching by pixels, not by import order,
  stays right when the importer skipped duplicates or when the project holds other items too.
  Items the file does not contain have no truth: a grid that shows one is answered "can't tell".

How the answers go wrong
------------------------
A whole grid is skipped with probability ``--cant-tell-rate``. Otherwise each annotator marks the
candidates by its model (:mod:`pal.simulate.models`): by default each candidate's true mark (outlier or
not, from the labels of it and of the reference) is flipped with probability ``--error-rate``.
``--team`` gives annotators other models (:mod:`pal.simulate.team`): confusion-driven mistakes that
fall on look-alike kinds (a matrix derived from the class mean images of ``--labels``, or read from a
file), a spammer who marks at random, a lazy annotator who answers "all same" on most grids. The
report lists each annotator's model and measured wrong-mark rate (``annotators``).

Accounts: with an admin token (``--admin-token`` or ``$PAL_ADMIN_TOKEN``) the simulator creates
``--annotators`` accounts (``POST /users``), issues each a token (``POST /users/{id}/tokens``) and adds
them to the project (``POST /projects/{pid}/members/{uid}``).

Example::

    pal simulate --server http://127.0.0.1:8000 --project 1 --labels demo/fashion-mnist-demo.npz \\
        --annotators 4 --tasks 200 --error-rate 0.1 --think-ms 800
    pal simulate --server http://127.0.0.1:8000 --project 1 --labels demo/fashion-mnist-demo.npz \
        --team "confusion=0.1:4,spammer:1" --tasks 200
"""

from pal.simulate.annotator import AnswerQuota, SimConfig, SimReport, SimulatedAnnotator
from pal.simulate.api import (
    ANNOTATOR_ROUTES,
    API,
    Account,
    ForbiddenRoute,
    RouteRecorder,
    SimulationError,
    annotator_client,
    create_annotators,
    route_template,
)
from pal.simulate.cli import build_parser, main
from pal.simulate.driver import simulate
from pal.simulate.models import AnnotatorModel, ConfusionMistakes, Lazy, Spammer, UniformFlips
from pal.simulate.team import HEADLINE_TEAM, TeamEntry, build_team, parse_team, team_size
from pal.simulate.truth import GroundTruth, match_items

__all__ = [
    "ANNOTATOR_ROUTES", "API", "HEADLINE_TEAM", "Account", "AnnotatorModel", "AnswerQuota", "ConfusionMistakes",
    "ForbiddenRoute", "GroundTruth", "Lazy", "RouteRecorder", "SimConfig", "SimReport", "SimulatedAnnotator",
    "SimulationError", "Spammer", "TeamEntry", "UniformFlips", "annotator_client", "build_parser", "build_team",
    "create_annotators", "main", "match_items", "parse_team", "route_template", "simulate", "team_size",
]
