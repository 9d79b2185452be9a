"""The Lua script that reads task messages and worker reports inside Redis (issue #14, 4 and 3).

A task message can be any size (a 10 MB argument is a 10 MB list element), and anyone who
can write to the broker can fill the worker report hash. The operator needs a message's
headers (ETA, publish time) and routing key, and a bounded number of small reports, so
the script cuts kombu's base64 `body` out of each message before it leaves Redis and
returns at most `cap` reports of at most `max_bytes` each. One EVALSHA per key rides in
the tick's pipeline, so a tick is still one round trip.

Modes (ARGV[1]):
- `tail key n max_bytes`: the last n elements of a list (LRANGE -n -1 order), each
  without its body; "" for one whose remaining envelope exceeds max_bytes.
- `unacked key cap max_bytes budget`: HLEN, then up to `cap` entries (all when the hash is
  smaller) counted by (routing key, eta header): `[hlen, read, rk, eta, count, ...]`.
  Each entry read costs Redis a copy of it whole, so entries past `budget` bytes copied
  are skipped (HSTRLEN first); `read` says how many were read.
- `reports key cap max_bytes`: `[hlen, field, value, ...]` for up to `cap` random fields
  whose name and value are small (HSTRLEN before HGET: a large forged value never leaves
  Redis nor enters the script).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# kombu puts "body" first in its envelope (and the envelope first in an unacked entry), so
# the key is searched for only in the first 64 bytes.
SCRIPT = """
local mode = ARGV[1]
local function slim(raw, max_bytes)
  if #raw <= max_bytes then return raw end
  local s, e = string.find(string.sub(raw, 1, 64), '"body"%s*:%s*"')
  if not s then return '' end
  local close = string.find(raw, '"', e + 1, true)
  if not close then return '' end
  local out = string.sub(raw, 1, e) .. string.sub(raw, close)
  if #out > max_bytes then return '' end
  return out
end
if mode == 'tail' then
  local n = tonumber(ARGV[2])
  local max_bytes = tonumber(ARGV[3])
  local out = {}
  for i = -n, -1 do
    local raw = redis.call('LINDEX', KEYS[1], i)
    if raw then out[#out + 1] = slim(raw, max_bytes) end
  end
  return out
elseif mode == 'unacked' then
  local cap, max_bytes, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local n = redis.call('HLEN', KEYS[1])
  local tags
  if n <= cap then tags = redis.call('HKEYS', KEYS[1])
  else tags = redis.call('HRANDFIELD', KEYS[1], cap) end
  local counts, order, read, spent = {}, {}, 0, 0
  for _, tag in ipairs(tags) do
    local len = redis.call('HSTRLEN', KEYS[1], tag)
    local raw = false
    if spent + len <= budget then
      spent = spent + len
      raw = redis.call('HGET', KEYS[1], tag)
    end
    if raw then
      read = read + 1
      local rk, eta = '', ''
      local ok, doc = pcall(cjson.decode, slim(raw, max_bytes))
      if ok and type(doc) == 'table' then
        if type(doc[3]) == 'string' then rk = doc[3] end
        local env = doc[1]
        if type(env) == 'table' and type(env['headers']) == 'table'
            and type(env['headers']['eta']) == 'string' then
          eta = env['headers']['eta']
        end
      end
      local k = rk .. '\\n' .. eta
      if not counts[k] then counts[k] = 0; order[#order + 1] = {rk, eta, k} end
      counts[k] = counts[k] + 1
    end
  end
  local out = {n, read}
  for _, o in ipairs(order) do
    out[#out + 1] = o[1]; out[#out + 1] = o[2]; out[#out + 1] = counts[o[3]]
  end
  return out
elseif mode == 'reports' then
  local cap, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
  local n = redis.call('HLEN', KEYS[1])
  local fields
  if n <= cap then fields = redis.call('HKEYS', KEYS[1])
  else fields = redis.call('HRANDFIELD', KEYS[1], cap) end
  local out = {n}
  for _, f in ipairs(fields) do
    if #f <= 512 and redis.call('HSTRLEN', KEYS[1], f) <= max_bytes then
      local v = redis.call('HGET', KEYS[1], f)
      if v then out[#out + 1] = f; out[#out + 1] = v end
    end
  end
  return out
end
return redis.error_reply('celeriac: unknown mode')
"""
# Redis names a script by its SHA-1 (EVALSHA); not a security use.
SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()


@dataclass
class UnackedCounts:
    """What the script (or a plain HVALS) says about an `unacked` hash."""

    total: int  # entries in the hash
    read: int  # entries whose routing key and ETA were read
    by_key_eta: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Entries per entry read: counts are extrapolated when the hash was sampled."""
        return self.total / self.read if self.read else 0.0


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_unacked(reply: list[object]) -> UnackedCounts:
    total, read = int(_int(reply[0])), int(_int(reply[1]))
    counts: dict[tuple[str, str], int] = {}
    for i in range(2, len(reply) - 2, 3):
        key = (_text(reply[i]), _text(reply[i + 1]))
        counts[key] = counts.get(key, 0) + int(_int(reply[i + 2]))
    return UnackedCounts(total, read, counts)


def parse_reports(reply: list[object]) -> tuple[int, dict[bytes, bytes]]:
    """(fields in the hash, the reports read) from a `reports` reply."""
    total = int(_int(reply[0]))
    values: dict[bytes, bytes] = {}
    for i in range(1, len(reply) - 1, 2):
        name, value = reply[i], reply[i + 1]
        if isinstance(name, bytes) and isinstance(value, bytes):
            values[name] = value
    return total, values


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        return int(value)
    raise TypeError("not an integer reply")
