"""Fair sharing of one queue between clients: round-robin over owners, FIFO within an owner.

Each owner carries the ticket of its last turn (a counter that only grows); the
next job is the oldest job of the owner whose last turn is the oldest (owners
never served hold ticket 0). So three scripts with ten jobs each run A, B, C,
A, B, C, ... and one script flooding the queue cannot starve the others. The
Redis queue applies the same rule inside its claim script.
"""
from __future__ import annotations

import heapq
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T")


def fair_order(items: Iterable[T], owner_of: Callable[[T], str], tickets: dict[str, int],
               tie: Callable[[str, T], Hashable] | None = None) -> list[T]:
    """``items`` (oldest first) in the order they will run under round-robin over owners.

    ``tickets`` maps an owner to the ticket of its last turn (missing = 0);
    ``tie(owner, first_item)`` orders owners with equal tickets (default: the
    owner whose oldest item is oldest goes first).
    """
    by_owner: dict[str, list[T]] = {}
    for item in items:
        by_owner.setdefault(owner_of(item), []).append(item)
    if len(by_owner) <= 1:
        return next(iter(by_owner.values()), [])
    arrival = {owner: index for index, owner in enumerate(by_owner)}
    tie = tie or (lambda owner, first: arrival[owner])
    heap = [(tickets.get(owner, 0), tie(owner, queue[0]), owner) for owner, queue in by_owner.items()]
    heapq.heapify(heap)
    ticket = max([0, *tickets.values()])
    order: list[T] = []
    heads = {owner: 0 for owner in by_owner}
    while heap:
        _, _, owner = heapq.heappop(heap)
        queue = by_owner[owner]
        order.append(queue[heads[owner]])
        heads[owner] += 1
        ticket += 1
        if heads[owner] < len(queue):
            heapq.heappush(heap, (ticket, tie(owner, queue[heads[owner]]), owner))
    return order


def fair_order_with_barriers(items: Iterable[T], owner_of: Callable[[T], str], tickets: dict[str, int],
                             is_barrier: Callable[[T], bool]) -> list[T]:
    """:func:`fair_order`, except that a barrier item (a checkpoint switch) keeps its place in time.

    Everything queued before a barrier runs before it and everything queued after
    it runs after it; owners take turns only between barriers.
    """
    order: list[T] = []
    segment: list[T] = []
    for item in items:
        if is_barrier(item):
            order += fair_order(segment, owner_of, tickets)
            order.append(item)
            segment = []
        else:
            segment.append(item)
    return order + fair_order(segment, owner_of, tickets)


def owner_count(items: Sequence[T], owner_of: Callable[[T], str], owner: str) -> int:
    """How many of ``items`` belong to ``owner``."""
    return sum(1 for item in items if owner_of(item) == owner)
