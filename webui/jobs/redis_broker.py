"""The shared queue's data in Redis: key layout and the atomic steps every process takes on it.

Redis does the brokering: per-owner lists of queued job ids, a sorted set of
leases that running workers renew, hashes for job records, a pub/sub channel
for events, keys with a time to live for worker heartbeats. Each step that
reads and writes several keys (submit, claim, renew, finish, reap, cancel) is
one Lua script, so it is atomic and uses Redis's clock, never a machine's.

Keys, under a prefix (default ``webui``)::

    job:<id>    hash: record (JSON), owner, seq, ckpt, enq, save, status, worker, deliveries, lost,
                started, finished, error*, progress (JSON), preview (PNG), result (JSON),
                images (count), image:<n> (PNG with infotext), interrupt, skip
    q:<owner>   list: that owner's queued job ids, oldest first
    owners      zset: owners with queued jobs, scored by the ticket of their last turn (round-robin)
    served      hash: owner -> ticket of its last turn;  ticket, seq: counters
    queued      zset: job id -> seq;  leases: job id -> lease end (ms);  history: job id -> end (ms)
    unsaved     set: finished jobs whose images the server has not saved yet
    wake        list: one token per job that became claimable (workers block on it)
    workers     set of worker names;  worker:<name>: its heartbeat (JSON, expires)
    events      pub/sub channel: {"type": "status"|"progress"|"finished", "id": ...}

One Redis server (not Redis Cluster): the scripts touch keys named at run time.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

DEFAULT_PREFIX = "webui"
MAX_DELIVERIES = 2  # a job whose worker died this many times fails instead of killing more
WAKE_TOKENS = 1000

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_REQUEUE = """
local function served_score(p, owner)
  return tonumber(redis.call('HGET', p .. ':served', owner) or '0')
end
local function requeue(p, id, key)
  local owner = redis.call('HGET', key, 'owner') or ''
  local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
  redis.call('HSET', key, 'status', 'queued')
  redis.call('HDEL', key, 'started', 'progress', 'preview', 'interrupt', 'skip')
  redis.call('LPUSH', p .. ':q:' .. owner, id)
  redis.call('ZADD', p .. ':queued', seq, id)
  redis.call('ZADD', p .. ':owners', 'NX', served_score(p, owner), owner)
  redis.call('RPUSH', p .. ':wake', id)
  redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'status', id = id}))
end
"""

_SUBMIT = _NOW + _REQUEUE + """
local p, id, owner = ARGV[1], ARGV[2], ARGV[3]
if redis.call('ZCARD', p .. ':queued') >= tonumber(ARGV[7]) then return -1 end
local per_owner = tonumber(ARGV[8])
if per_owner > 0 and redis.call('LLEN', p .. ':q:' .. owner) >= per_owner then return -2 end
local seq = redis.call('INCR', p .. ':seq')
local key = p .. ':job:' .. id
redis.call('HSET', key, 'record', ARGV[4], 'owner', owner, 'seq', seq, 'ckpt', ARGV[5], 'save', ARGV[6],
           'enq', now, 'status', 'queued', 'deliveries', 0)
redis.call('RPUSH', p .. ':q:' .. owner, id)
redis.call('ZADD', p .. ':queued', seq, id)
redis.call('ZADD', p .. ':owners', 'NX', served_score(p, owner), owner)
redis.call('RPUSH', p .. ':wake', id)
redis.call('LTRIM', p .. ':wake', -tonumber(ARGV[9]), -1)
redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'status', id = id}))
return seq
"""

# Owners in turn order; an owner's oldest job unless affinity says another worker should take it.
_CLAIM = _NOW + """
local p, worker, lease, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local avoid, young = {}, {}
for _, h in ipairs(cjson.decode(ARGV[5])) do avoid[h] = true end
for _, h in ipairs(cjson.decode(ARGV[6])) do young[h] = true end
for _, owner in ipairs(redis.call('ZRANGE', p .. ':owners', 0, -1)) do
  local q = p .. ':q:' .. owner
  local id = redis.call('LINDEX', q, 0)
  if not id then
    redis.call('ZREM', p .. ':owners', owner)
  else
    local key = p .. ':job:' .. id
    local info = redis.call('HMGET', key, 'ckpt', 'enq')
    local ckpt, enq = info[1] or '', tonumber(info[2] or '0')
    if ckpt == '' or not (avoid[ckpt] or (young[ckpt] and now - enq < grace)) then
      redis.call('LPOP', q)
      local ticket = redis.call('INCR', p .. ':ticket')
      redis.call('HSET', p .. ':served', owner, ticket)
      if redis.call('LLEN', q) == 0 then
        redis.call('ZREM', p .. ':owners', owner)
      else
        redis.call('ZADD', p .. ':owners', ticket, owner)
      end
      redis.call('ZREM', p .. ':queued', id)
      redis.call('ZADD', p .. ':leases', now + lease, id)
      local deliveries = redis.call('HINCRBY', key, 'deliveries', 1)
      redis.call('HSET', key, 'status', 'running', 'worker', worker, 'started', string.format('%.3f', now / 1000))
      redis.call('HDEL', key, 'interrupt', 'skip', 'progress', 'preview')
      redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'status', id = id}))
      return {id, redis.call('HGET', key, 'record'), deliveries}
    end
  end
end
return false
"""

# The queue as the claim script sees it: owners' last-turn tickets, then each owner and its queued ids.
_ORDER = """
local p = ARGV[1]
local out = {redis.call('HGETALL', p .. ':served')}
for _, owner in ipairs(redis.call('ZRANGE', p .. ':owners', 0, -1)) do
  table.insert(out, {owner, redis.call('LRANGE', p .. ':q:' .. owner, 0, -1)})
end
return out
"""

_HOLDS = """
local function holds(key, worker)
  local v = redis.call('HMGET', key, 'worker', 'status')
  return v[1] == worker and v[2] == 'running'
end
"""

_RENEW = _NOW + _HOLDS + """
local p, id, worker = ARGV[1], ARGV[2], ARGV[3]
if not holds(p .. ':job:' .. id, worker) then return 0 end
redis.call('ZADD', p .. ':leases', now + tonumber(ARGV[4]), id)
return 1
"""

# ARGV[5..]: field/value pairs of the outcome (status, error, result, images, image:<n>, ...).
_FINISH = _NOW + _HOLDS + """
local p, id, worker = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':job:' .. id
if not holds(key, worker) then return 0 end
redis.call('HSET', key, 'finished', string.format('%.3f', now / 1000), unpack(ARGV, 5))
redis.call('ZREM', p .. ':leases', id)
redis.call('ZADD', p .. ':history', now, id)
if ARGV[4] == '1' and redis.call('HGET', key, 'save') == '1' then redis.call('SADD', p .. ':unsaved', id) end
redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'finished', id = id}))
return 1
"""

_RELEASE = _NOW + _HOLDS + _REQUEUE + """
local p, id, worker = ARGV[1], ARGV[2], ARGV[3]
local key = p .. ':job:' .. id
if not holds(key, worker) then return 0 end
redis.call('ZREM', p .. ':leases', id)
redis.call('HINCRBY', key, 'deliveries', -1)
requeue(p, id, key)
return 1
"""

_REAP = _NOW + _REQUEUE + """
local p, max = ARGV[1], tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', p .. ':leases', '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', p .. ':leases', id)
  local key = p .. ':job:' .. id
  if redis.call('HGET', key, 'status') == 'running' then
    local worker = redis.call('HGET', key, 'worker') or '?'
    local lost = redis.call('HGET', key, 'lost') or ''
    if lost == '' then lost = worker else lost = lost .. ', ' .. worker end
    redis.call('HSET', key, 'lost', lost)
    local deliveries = tonumber(redis.call('HGET', key, 'deliveries') or '0')
    if redis.call('HGET', key, 'interrupt') then  -- the user had asked it to stop: do not run it again
      redis.call('HSET', key, 'status', 'interrupted', 'finished', string.format('%.3f', now / 1000),
                 'error', 'interrupted; its worker (' .. worker .. ') stopped answering before it ended')
      redis.call('ZADD', p .. ':history', now, id)
      redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'finished', id = id}))
    elseif deliveries >= max then
      redis.call('HSET', key, 'status', 'failed', 'finished', string.format('%.3f', now / 1000),
                 'error', 'the job was tried ' .. deliveries .. ' times and each worker running it stopped answering ('
                   .. lost .. '); the job itself may be what stops them',
                 'error_type', 'WorkerLost', 'error_status', 500)
      redis.call('ZADD', p .. ':history', now, id)
      redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'finished', id = id}))
    else
      requeue(p, id, key)
    end
  end
end
return #expired
"""

_CANCEL = _NOW + """
local p, id = ARGV[1], ARGV[2]
local key = p .. ':job:' .. id
local status = redis.call('HGET', key, 'status')
if status == 'queued' then
  redis.call('LREM', p .. ':q:' .. (redis.call('HGET', key, 'owner') or ''), 1, id)
  redis.call('ZREM', p .. ':queued', id)
  redis.call('HSET', key, 'status', 'canceled', 'finished', string.format('%.3f', now / 1000))
  redis.call('ZADD', p .. ':history', now, id)
  redis.call('PUBLISH', p .. ':events', cjson.encode({type = 'finished', id = id}))
elseif status == 'running' then
  redis.call('HSET', key, 'interrupt', 1)
end
return status or ''
"""

_SKIP = """
local key = ARGV[1] .. ':job:' .. ARGV[2]
if redis.call('HGET', key, 'status') ~= 'running' then return 0 end
redis.call('HINCRBY', key, 'skip', 1)
return 1
"""


@dataclass(frozen=True)
class Claim:
    """A job a worker now holds: its id, stored record and how many times it was handed out."""

    job_id: str
    record: dict
    deliveries: int


def connect(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client for ``redis://``/``rediss://`` URLs (password and db in the URL), binary-safe.

    One immediate retry (a pooled connection may predate a Redis restart), no more:
    the queue's own loops back off and report an outage, so a request fails fast.
    """
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                health_check_interval=30, retry=Retry(NoBackoff(), 1))


def redacted(url: str) -> str:
    """The URL with any password hidden, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0] if ":" in credentials else ""
    return f"{scheme}{sep}{user}:***@{host}"


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RedisBroker:
    """The queue's Redis operations (thread safe: redis-py pools connections)."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX):
        self.client = client
        self.prefix = prefix
        self._scripts = {name: client.register_script(body) for name, body in (
            ("submit", _SUBMIT), ("claim", _CLAIM), ("renew", _RENEW), ("finish", _FINISH),
            ("release", _RELEASE), ("reap", _REAP), ("cancel", _CANCEL), ("skip", _SKIP),
            ("order", _ORDER))}

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> "RedisBroker":
        return cls(connect(url), prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _run(self, name: str, *args) -> Any:
        return self._scripts[name](args=[self.prefix, *args])

    # ------------------------------------------------------------ queue steps
    def submit(self, job_id: str, owner: str, record: dict, *, checkpoint: str, save: bool,
               max_length: int, max_per_owner: int) -> int:
        """Queue a job; returns its seq, -1 when the queue is full, -2 when its owner has too many waiting."""
        return int(self._run("submit", job_id, owner, json.dumps(record), checkpoint, int(save),
                             int(max_length), int(max_per_owner), WAKE_TOKENS))

    def claim(self, worker: str, *, lease_ms: int, grace_ms: int, avoid: list[str], young: list[str]) -> Claim | None:
        """Take the next job in turn order, or None. ``avoid``: checkpoint hashes to leave to other
        workers; ``young``: hashes to leave to them while the job is younger than ``grace_ms``."""
        found = self._run("claim", worker, int(lease_ms), int(grace_ms), json.dumps(avoid), json.dumps(young))
        if not found:
            return None
        job_id, record, deliveries = found
        return Claim(_text(job_id), json.loads(record), int(deliveries))

    def wait_for_work(self, timeout_s: float) -> None:
        """Block until a job may be claimable (or ``timeout_s`` passed)."""
        self.client.blpop([self.key("wake")], timeout=max(0.01, timeout_s))

    def renew(self, job_id: str, worker: str, lease_ms: int) -> bool:
        """Extend this worker's lease; False when the job is no longer this worker's."""
        return bool(self._run("renew", job_id, worker, int(lease_ms)))

    def finish(self, job_id: str, worker: str, fields: dict[str, Any], *, save: bool) -> bool:
        """Record a job's end (if this worker still holds it); False when the lease was lost.

        ``save``: the result has images; the server saves them if the job asked for it."""
        pairs = [item for kv in fields.items() for item in kv]
        return bool(self._run("finish", job_id, worker, int(save), *pairs))

    def release(self, job_id: str, worker: str) -> bool:
        """Give a held job back to the front of its owner's queue (a worker stopping cleanly)."""
        return bool(self._run("release", job_id, worker))

    def reap(self, max_deliveries: int = MAX_DELIVERIES) -> int:
        """Requeue (or fail) the jobs of workers whose lease ran out; returns how many leases ended."""
        return int(self._run("reap", int(max_deliveries)))

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job, or flag a running one to stop; returns the status it had."""
        return _text(self._run("cancel", job_id)) or ""

    def interrupt(self, job_id: str) -> None:
        self.client.hset(self.key("job", job_id), "interrupt", 1)

    def skip(self, job_id: str) -> None:
        self._run("skip", job_id)

    def signals(self, job_id: str) -> tuple[bool, int]:
        """(interrupt requested, skip requests so far) of a running job."""
        interrupt, skip = self.client.hmget(self.key("job", job_id), "interrupt", "skip")
        return bool(interrupt), int(skip or 0)

    def publish_progress(self, job_id: str, progress: dict, preview_png: bytes | None) -> None:
        fields: dict[str, Any] = {"progress": json.dumps(progress)}
        if preview_png is not None:
            fields["preview"] = preview_png
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key("job", job_id), mapping=fields)
        pipe.publish(self.key("events"), json.dumps({"type": "progress", "id": job_id}))
        pipe.execute()

    # ------------------------------------------------------------ reads
    def job_fields(self, job_ids: list[str], fields: tuple[str, ...]) -> list[dict[str, Any] | None]:
        """Some fields of several jobs (None for a job that is gone)."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.key("job", job_id), *fields)
        rows = []
        for values in pipe.execute():
            row = dict(zip(fields, values))
            rows.append(row if any(v is not None for v in values) else None)
        return rows

    def queued_by_owner(self) -> tuple[list[tuple[str, str]], dict[str, int]]:
        """Every queued (owner, job id), each owner's oldest first, and the owners' last-turn tickets."""
        served, *queues = self._run("order")
        items = [(_text(owner), _text(job_id)) for owner, ids in queues for job_id in ids]
        return items, {_text(k): int(v) for k, v in zip(served[::2], served[1::2])}

    def running_ids(self) -> list[str]:
        return [_text(i) for i in self.client.zrange(self.key("leases"), 0, -1)]

    def queued_count(self) -> int:
        return int(self.client.zcard(self.key("queued")))

    def history_ids(self, limit: int) -> list[str]:
        """Finished jobs, newest first."""
        return [_text(i) for i in self.client.zrevrange(self.key("history"), 0, max(0, limit - 1))]

    # ------------------------------------------------------------ results the server saves
    def take_unsaved(self, job_id: str) -> bool:
        """True for exactly one caller: the one that must save this job's images."""
        return bool(self.client.srem(self.key("unsaved"), job_id))

    def unsaved_ids(self) -> list[str]:
        return [_text(i) for i in self.client.smembers(self.key("unsaved"))]

    def set_fields(self, job_id: str, fields: dict[str, Any]) -> None:
        self.client.hset(self.key("job", job_id), mapping=fields)

    def prune(self, keep_history: int, keep_results: int) -> None:
        """Forget all but the newest finished jobs, and the images of all but the newest few."""
        history = self.key("history")
        old = [_text(i) for i in self.client.zrevrange(history, keep_history, -1)]
        kept = [_text(i) for i in self.client.zrevrange(history, keep_results, keep_history - 1)]
        counts = self.job_fields(kept, ("images",)) if kept else []
        pipe = self.client.pipeline(transaction=False)
        for job_id in old:
            pipe.delete(self.key("job", job_id))
            pipe.zrem(history, job_id)
        for job_id, row in zip(kept, counts):
            count = int(row["images"]) if row is not None and row["images"] is not None else 0
            if count:
                pipe.hdel(self.key("job", job_id), "result", "images", *[f"image:{i}" for i in range(count)])
        pipe.execute()

    # ------------------------------------------------------------ workers
    def heartbeat(self, worker: str, info: dict, ttl_s: float) -> None:
        """Say this worker is alive and what it holds, for ``ttl_s`` seconds."""
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.key("workers"), worker)
        pipe.set(self.key("worker", worker), json.dumps(info), px=max(1, int(ttl_s * 1000)))
        pipe.execute()

    def forget_worker(self, worker: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.srem(self.key("workers"), worker)
        pipe.delete(self.key("worker", worker))
        pipe.execute()

    def workers(self) -> dict[str, dict]:
        """Live workers and what they last said they hold; the names of dead ones are dropped."""
        names = sorted(_text(n) for n in self.client.smembers(self.key("workers")))
        if not names:
            return {}
        values = self.client.mget([self.key("worker", n) for n in names])
        dead = [n for n, v in zip(names, values) if v is None]
        if dead:
            self.client.srem(self.key("workers"), *dead)
        return {n: json.loads(v) for n, v in zip(names, values) if v is not None}
