"""Clusters from pair votes: union-find over positive pairs, cannot-links between clusters,
conflicted groups cut by weighted majority.

- *Raw groups* are the connected components of the positive pairs. A raw group with no negative
  pair inside it is one known cluster. A raw group with negative pairs inside is *conflicted*: it
  is cut into clusters by :func:`~pal.core.mincut.split_conflicted`.
- Negative pairs between two clusters make a *cannot-link* between them (weight: the sum of their
  nets); positive pairs between two clusters (overruled ones) are kept too, since they may tip
  the balance later.

Raw groups of at most ``exact_limit`` items are recomputed from their own pairs when a query
needs them (marked dirty meanwhile): their clusters are a function of the live pairs only.
Larger conflicted groups are kept up to date *locally*, the same weighted majority applied at the
cluster level as pairs change (see :meth:`Clusters._apply_locally`); that state depends on the
arrival order.
"""

from __future__ import annotations

from pal.core.edges import EPS, Pair, pair_key, sign_of
from pal.core.mincut import positive_components, split_conflicted
from pal.core.votes import VoteBook

LinkMap = dict[int, dict[int, float]]


def find_root(parent: dict[int, int], x: int) -> int:
    """Union-find lookup with path compression; an id absent from ``parent`` is its own root."""
    root = x
    while True:
        p = parent.get(root, root)
        if p == root:
            break
        root = p
    while x != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


def add_link(maps: LinkMap, a: int, b: int, w: float) -> None:
    """Add ``w`` (may be negative, to remove weight) to the link between roots a and b."""
    if w == 0.0 or a == b:
        return
    for x, y in ((a, b), (b, a)):
        links = maps.setdefault(x, {})
        nw = links.get(y, 0.0) + w
        if nw > EPS:
            links[y] = nw
        else:
            links.pop(y, None)
            if not links:
                del maps[x]


def _component_of(start: int, pos_adj: dict[int, set[int]]) -> list[int]:
    """The positive component of ``start``, sorted."""
    seen = {start}
    stack = [start]
    out = []
    while stack:
        x = stack.pop()
        out.append(x)
        for y in pos_adj.get(x, ()):
            if y not in seen:
                seen.add(y)
                stack.append(y)
    out.sort()
    return out


def _drop_links(maps: LinkMap, root: int, keep_if: set[int] | None = None) -> None:
    """Remove ``root``'s links from both sides (a partner in ``keep_if`` keeps its own entry)."""
    for t in maps.pop(root, {}):
        if keep_if is not None and t in keep_if:
            continue
        lt = maps[t]
        lt.pop(root, None)
        if not lt:
            del maps[t]


class Clusters:
    """The partition of items into clusters and the links between clusters, kept in step with a
    :class:`~pal.core.votes.VoteBook`. Not thread-safe: the graph holds its lock."""

    def __init__(self, votes: VoteBook, exact_limit: int = 512) -> None:
        self.votes = votes
        # Conflicted groups up to this many items are resolved exactly (order-free); larger ones
        # locally, as pairs change.
        self.exact_limit = exact_limit
        self.clear()

    def clear(self) -> None:
        # Clusters: union-find with member lists at roots of size >= 2.
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        # Cannot-links between cluster roots, symmetric: cl[a][b] == cl[b][a] > 0 (negative weight
        # between the clusters); pb the same for positive weight between different clusters.
        self.cl: LinkMap = {}
        self.pb: LinkMap = {}
        # Raw groups (components of positive pairs): their own union-find and the conflicted ones.
        self.rparent: dict[int, int] = {}
        self.rsize: dict[int, int] = {}
        self.rconflicted: set[int] = set()
        self.dirty: set[int] = set()

    def find(self, x: int) -> int:
        return find_root(self.parent, x)

    def rfind(self, x: int) -> int:
        return find_root(self.rparent, x)

    def is_small(self, u: int, v: int) -> bool:
        """The raw group(s) of u and v (sizes are upper bounds) are resolved exactly."""
        ru, rv = self.rfind(u), self.rfind(v)
        return self.rsize.get(ru, 1) + (self.rsize.get(rv, 1) if ru != rv else 0) <= self.exact_limit

    # ------------------------------------------------------------ pair changes

    def before_revote(self, key: Pair) -> None:
        """Call before the pair's vote changes."""
        if self.dirty and not self.is_small(*key):
            # Bring the pending small groups up to date (with this pair's old vote) before a large
            # group is touched: the local update needs a consistent structure.
            self.resolve()

    def after_revote(self, key: Pair, old: float, new: float) -> None:
        """Apply a pair's change of net vote from ``old`` to ``new`` to the clusters."""
        s_old, s_new = sign_of(old), sign_of(new)
        if s_old == 0 and s_new == 0:
            return
        u, v = key
        exact = self.is_small(u, v)
        if self.dirty and exact:
            # Some small groups are stale: let the next resolve recompute this pair's groups too
            # rather than reasoning about a half-updated structure.
            self.dirty.update(key)
            return
        ru, rv = self.rfind(u), self.rfind(v)
        if ru != rv and s_new <= 0:
            # Negative (or no) evidence between two positive groups: a cannot-link update only.
            add_link(self.cl, self.find(u), self.find(v), max(-new, 0.0) - max(-old, 0.0))
            return
        if ru != rv and s_old < 0:
            add_link(self.cl, self.find(u), self.find(v), old)  # old < 0: removes it
            old = 0.0
        if s_new > 0 and self._plain_union(u, v, ru, rv, s_old):
            return
        if exact:
            self.dirty.update(key)
        else:
            self._apply_locally(u, v, old, new)

    def _plain_union(self, u: int, v: int, ru: int, rv: int, s_old: int) -> bool:
        """A positive pair that needs no cut: inside a consistent cluster, or joining two clusters
        without any contradiction. Returns whether it was handled."""
        if ru in self.rconflicted or rv in self.rconflicted:
            return False
        fu, fv = self.find(u), self.find(v)
        if fu == fv and s_old >= 0:
            return True
        if fu != fv and fv not in self.cl.get(fu, {}):
            if ru != rv:
                self._runion(ru, rv)
            self._union(fu, fv)
            return True
        return False

    def _apply_locally(self, u: int, v: int, old: float, new: float) -> None:
        """Weighted majority at the cluster level, for a pair inside or next to a large conflicted
        group (the state stays consistent: no dirty groups are pending)."""
        ru, rv = self.rfind(u), self.rfind(v)
        if new > EPS and ru != rv:
            self._runion(ru, rv)
            ru = self.rfind(u)
        x, y = self.find(u), self.find(v)
        if x != y:
            # The pair's evidence moves between the two clusters' link maps.
            add_link(self.pb, x, y, max(new, 0.0) - max(old, 0.0))
            add_link(self.cl, x, y, max(-new, 0.0) - max(-old, 0.0))
            if self.pb.get(x, {}).get(y, 0.0) > self.cl.get(x, {}).get(y, 0.0) + EPS:
                if y in self.cl.get(x, {}):
                    self.rconflicted.add(ru)
                self._union(x, y)
            return
        if old > EPS and new <= EPS:
            # A positive pair lost inside a cluster: it may fall apart.
            parts = positive_components(self.members[x], self.votes.pos_adj)
            if len(parts) > 1:
                self._replace_cluster(x, parts)
                x = self.find(u)
                if x != self.find(v):
                    return
        if new < -EPS:
            self.rconflicted.add(ru)
            members = self.members[x]
            inside = set(members)
            neg_adj = self.votes.neg_adj
            inner = sorted({pair_key(a, b) for a in members for b in neg_adj.get(a, ()) if b in inside})
            parts = split_conflicted(members, self.votes.pos_adj, inner, self.votes.net, triggers=[pair_key(u, v)])
            if len(parts) > 1:
                self._replace_cluster(x, parts)

    def _replace_cluster(self, root: int, parts: list[list[int]]) -> None:
        """Split cluster ``root`` into ``parts`` and rebuild the link maps of its members."""
        members = self.members.pop(root)
        for maps in (self.cl, self.pb):
            _drop_links(maps, root)
        for x in members:
            self.parent.pop(x, None)
        for part in parts:
            if len(part) > 1:
                self._set_cluster(part)
        self._link_items(set(members))

    def _link_items(self, items: set[int]) -> None:
        """Add the link-map entries of every pair with an end in ``items`` (whose old entries are
        gone) that joins two different clusters."""
        net = self.votes.net
        for x in items:
            rx = self.find(x)
            for maps, adj, sign in ((self.pb, self.votes.pos_adj, 1.0), (self.cl, self.votes.neg_adj, -1.0)):
                for y in adj.get(x, ()):
                    if y in items and y < x:
                        continue
                    ry = self.find(y)
                    if ry != rx:
                        add_link(maps, rx, ry, sign * net[pair_key(x, y)])

    # ------------------------------------------------------------ unions

    def _runion(self, a: int, b: int) -> None:
        sa, sb = self.rsize.get(a, 1), self.rsize.get(b, 1)
        if sa < sb:
            a, b = b, a
        self.rparent[b] = a
        self.rparent.setdefault(a, a)
        self.rsize[a] = sa + sb
        self.rsize.pop(b, None)
        if b in self.rconflicted:
            self.rconflicted.discard(b)
            self.rconflicted.add(a)

    def _union(self, a: int, b: int) -> None:
        """Merge clusters with roots a != b; links between them become internal (dropped)."""
        ma = self.members.get(a)
        mb = self.members.get(b)
        if (len(ma) if ma else 1) < (len(mb) if mb else 1):
            a, b, ma, mb = b, a, mb, ma
        self.parent[b] = a
        self.parent.setdefault(a, a)
        if ma is None:
            ma = self.members[a] = [a]
        ma.extend(mb if mb is not None else [b])
        self.members.pop(b, None)
        for maps in (self.cl, self.pb):
            links_b = maps.pop(b, None)
            if not links_b:
                continue
            links_a = maps.setdefault(a, {})
            for t, w in links_b.items():
                lt = maps[t]
                del lt[b]
                if t == a:
                    continue
                lt[a] = lt.get(a, 0.0) + w
                links_a[t] = links_a.get(t, 0.0) + w
            links_a.pop(b, None)
            if not links_a:
                del maps[a]

    def _set_cluster(self, part: list[int]) -> None:
        root = part[0]
        for x in part:
            self.parent[x] = root
        self.members[root] = list(part)

    # ------------------------------------------------------------ lazy resolution

    def resolve(self) -> None:
        """Recompute exactly every raw group that touches a dirty item, from its own pairs."""
        if not self.dirty:
            return
        seeds = self.dirty
        self.dirty = set()
        items: set[int] = set()
        groups: list[list[int]] = []
        for s in sorted(seeds):
            if s in items:
                continue
            group = _component_of(s, self.votes.pos_adj)
            items.update(group)
            groups.append(group)
        self._forget(items)
        for group in groups:
            self._rebuild_group(group)
        self._link_items(items)

    def _forget(self, items: set[int]) -> None:
        """Drop the old state of these items: cluster roots, link maps, raw groups."""
        old_roots = {self.find(x) for x in items}
        old_raw = {self.rfind(x) for x in items}
        for maps in (self.cl, self.pb):
            for r in old_roots:
                _drop_links(maps, r, keep_if=old_roots)
        for r in old_roots:
            self.members.pop(r, None)
        for r in old_raw:
            self.rconflicted.discard(r)
            self.rsize.pop(r, None)
        for x in items:
            self.parent.pop(x, None)
            self.rparent.pop(x, None)

    def _rebuild_group(self, group: list[int]) -> None:
        if len(group) == 1:
            return
        root = group[0]
        for x in group:
            self.rparent[x] = root
        self.rsize[root] = len(group)
        members = set(group)
        neg_adj = self.votes.neg_adj
        inner_neg = sorted({pair_key(x, y) for x in group for y in neg_adj.get(x, ()) if y in members})
        if not inner_neg:
            self._set_cluster(group)
            return
        self.rconflicted.add(root)
        for part in split_conflicted(group, self.votes.pos_adj, inner_neg, self.votes.net):
            if len(part) > 1:
                self._set_cluster(part)
