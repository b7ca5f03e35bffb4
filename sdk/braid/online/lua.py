"""Lua scripts of the Redis online store (Redis 7 runs Lua 5.1: every number is a double).

The projection-row writer, generated per number of projections, is in
:mod:`braid.online.lua_rows`; it shares :data:`PRELUDE`.

Traps handled here (DESIGN §5): ``tostring`` keeps 14 digits, so floats are written with the
shortest of ``%.15g``/``%.16g``/``%.17g`` that parses back to the same double; a float
returned to the client is truncated to an integer, so scripts return only integers; and
``HINCRBYFLOAT`` rounds through long double, so it is never used. int64 values are kept as
decimal strings: they are compared as strings (numerically when both are below 10^15, exact as
doubles) and added with exact decimal arithmetic (doubles are exact only below 2^53), with
overflow refused as DESIGN §4.3 requires.

Expiry is garbage collection only (DESIGN §4.6). ``expire`` refreshes a key's relative
``PEXPIRE`` only when less than ``expiry - 1 hour`` is left: a ``PTTL`` read costs less than
a ``PEXPIRE``, which Redis also propagates to the AOF. A key written again within the hour
keeps its earlier deadline, so it expires between ``expiry - 1 hour`` and ``expiry`` after its
last write, i.e. at least ``max(ttl, W + h + L) + 23 hours`` later, past anything a reader
may still serve. (A deliberate relaxation of "from the time of writing", for write speed.)
"""

from __future__ import annotations

from braid.online.encoding import EXPIRE_REFRESH_MS

PRELUDE = r"""
local MISSING = '-9223372036854775808'
local INT_MAX = '9223372036854775807'
local FMT = {'%.15g', '%.16g', '%.17g'}
local state = {overflow = false}

local function bcmp(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  local n = la < lb and la or lb
  for i = 1, n do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return la < lb and -1 or 1
end

local function icmp(a, b)
  if #a < 16 and #b < 16 then  -- below 10^15: exact as doubles, one comparison
    local x, y = tonumber(a), tonumber(b)
    if x < y then return -1 elseif x > y then return 1 end
    return 0
  end
  local na, nb = a:byte(1) == 45, b:byte(1) == 45
  if na ~= nb then return na and -1 or 1 end
  local c
  if #a ~= #b then c = (#a < #b) and -1 or 1 else c = bcmp(a, b) end
  if na then return -c end
  return c
end

local function uadd(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry + (i > 0 and a:byte(i) - 48 or 0) + (j > 0 and b:byte(j) - 48 or 0)
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    out[#out + 1] = d
    i = i - 1; j = j - 1
  end
  return string.reverse(table.concat(out))
end

local function usub(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = a:byte(i) - 48 - borrow - (j > 0 and b:byte(j) - 48 or 0)
    if d < 0 then d = d + 10; borrow = 1 else borrow = 0 end
    out[#out + 1] = d
    i = i - 1; j = j - 1
  end
  local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  if s == '' then return '0' end
  return s
end

local function iadd(a, b)
  if #a < 16 and #b < 16 then
    return string.format('%.0f', tonumber(a) + tonumber(b))
  end
  local na, nb = a:byte(1) == 45, b:byte(1) == 45
  local ma, mb = na and a:sub(2) or a, nb and b:sub(2) or b
  local r
  if na == nb then
    r = uadd(ma, mb)
    if na then r = '-' .. r end
  else
    local c = icmp(ma, mb)
    if c == 0 then r = '0'
    elseif c > 0 then r = usub(ma, mb); if na then r = '-' .. r end
    else r = usub(mb, ma); if nb then r = '-' .. r end end
  end
  if icmp(r, INT_MAX) > 0 or icmp(r, MISSING) < 0 then state.overflow = true end
  return r
end

local function fmt(x)
  for _, f in ipairs(FMT) do
    local s = string.format(f, x)
    if tonumber(s) == x then return s end
  end
  return string.format('%.17g', x)
end

local function unesc(s)
  if s == '%' then return '' end
  return (string.gsub(string.gsub(s, '%%2C', ','), '%%25', '%%'))
end

local function vcmp(t, a, b)
  if t == 'i' then return icmp(a, b) end
  if t == 'f' then
    local x, y = tonumber(a), tonumber(b)
    if x < y then return -1 elseif x > y then return 1 end
    return 0
  end
  if t == 's' then return bcmp(unesc(a), unesc(b)) end
  return bcmp(a, b)
end

local function split(s)
  local out, start = {}, 1
  while true do
    local i = string.find(s, ',', start, true)
    if not i then out[#out + 1] = s:sub(start); return out end
    out[#out + 1] = s:sub(start, i - 1)
    start = i + 1
  end
end

local function layout(text)
  local parts = {}
  for c in text:gmatch('.') do
    if c:match('%u') then parts[#parts + 1] = {kind = c, types = {}}
    else local t = parts[#parts].types; t[#t + 1] = c end
  end
  return parts
end

local function merge_partial(kind, types, a, b)
  if a[1] == '' then return b end
  if b[1] == '' then return a end
  if kind == 'S' then
    local out = {}
    for i, t in ipairs(types) do
      if t == 'i' then out[i] = iadd(a[i], b[i])
      else out[i] = fmt(tonumber(a[i]) + tonumber(b[i])) end
    end
    return out
  elseif kind == 'N' then
    if vcmp(types[1], b[1], a[1]) < 0 then return b end
    return a
  elseif kind == 'X' then
    if vcmp(types[1], b[1], a[1]) > 0 then return b end
    return a
  elseif kind == 'C' then
    local na, ma, m2a = tonumber(a[1]), tonumber(a[2]), tonumber(a[3])
    local nb, mb, m2b = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
    local n = na + nb
    if n == 0 then return {'0', '0', '0'} end
    local delta = mb - ma
    local mean = ma + delta * nb / n
    local m2 = m2a + m2b + delta * delta * na * nb / n
    return {string.format('%.0f', n), fmt(mean), fmt(m2)}
  end
  local c = icmp(a[1], b[1])
  if c == 0 then c = icmp(a[2], b[2]) end
  if c == 0 then c = vcmp(types[3], a[3], b[3]) end
  if c >= 0 then return a end
  return b
end

local function merge_value(parts, old, delta)
  local a, b, out, at = split(old), split(delta), {}, 0
  for _, p in ipairs(parts) do
    local w = #p.types
    local pa, pb = {}, {}
    for i = 1, w do pa[i] = a[at + i]; pb[i] = b[at + i] end
    local m = merge_partial(p.kind, p.types, pa, pb)
    for i = 1, w do out[at + i] = m[i] end
    at = at + w
  end
  return table.concat(out, ',')
end

local function prune(key, hop, span)
  local pre = hop .. ':'
  local tiles, newest = {}, nil
  local from = #pre + 1
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.find(f, pre, 1, true) == 1 then
      local t = tonumber(string.sub(f, from))
      if t then
        tiles[#tiles + 1] = {f, t}
        if newest == nil or t > newest then newest = t end
      end
    end
  end
  if newest == nil then return end
  local dead = {}
  for _, x in ipairs(tiles) do
    if x[2] < newest - span then dead[#dead + 1] = x[1] end
  end
  if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
end

local REFRESH = __REFRESH__
local function expire(key, ms)
  if ms == '' then return end
  local left = redis.call('PTTL', key)
  if left < 0 or left < tonumber(ms) - REFRESH then redis.call('PEXPIRE', key, ms) end
end
""".replace("__REFRESH__", str(EXPIRE_REFRESH_MS))

#: KEYS: hashes whose tiles of one hop were just written (``write_tiles`` writes absolute
#: states with plain ``HSET``). ARGV: hop, prune span. Returns the keys pruned.
PRUNE_TILES = PRELUDE + r"""
local hop, span = ARGV[1], tonumber(ARGV[2])
for _, key in ipairs(KEYS) do prune(key, hop, span) end
return #KEYS
"""

#: KEYS: one hash per entity. ARGV: pexpire ms, hop, prune span, layout, guard field ('' =
#: none), seq, then per key: n and n pairs (tile_start, delta). All merges are computed before
#: anything is written, so an int64 overflow leaves the batch untouched. Returns keys applied.
MERGE_TILES = PRELUDE + r"""
local pexp, hop, span = ARGV[1], ARGV[2], tonumber(ARGV[3])
local parts, gfield, seq = layout(ARGV[4]), ARGV[5], ARGV[6]
local at, applied, pending, keys, skip = 7, 0, {}, {}, {}
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  if gfield ~= '' and skip[key] == nil then
    local cur = redis.call('HGET', key, gfield)
    skip[key] = (cur and icmp(seq, cur) <= 0) and true or false
  end
  if not skip[key] then
    applied = applied + 1
    local p = pending[key]
    if p == nil then p = {}; pending[key] = p; keys[#keys + 1] = key end
    local fields, cur = {}, {}
    for j = 1, n do fields[j] = hop .. ':' .. ARGV[at + 2 * j - 1] end
    for lo = 1, n, 500 do  -- one HMGET per 500 tiles (unpack has a stack limit)
      local got = redis.call('HMGET', key, unpack(fields, lo, math.min(n, lo + 499)))
      for j = 1, #got do cur[lo + j - 1] = got[j] end
    end
    for j = 1, n do
      local field, delta = fields[j], ARGV[at + 2 * j]
      local old = p[field]
      if old == nil then old = cur[j] end
      if old then p[field] = merge_value(parts, old, delta) else p[field] = delta end
    end
    if state.overflow then
      return redis.error_reply('braid overflow: an int64 tile sum left the int64 range at ' .. key)
    end
  end
  at = at + 1 + 2 * n
end
for _, key in ipairs(keys) do
  local sets = {}
  for f, v in pairs(pending[key]) do sets[#sets + 1] = f; sets[#sets + 1] = v end
  if gfield ~= '' then sets[#sets + 1] = gfield; sets[#sets + 1] = seq end
  redis.call('HSET', key, unpack(sets))
  prune(key, hop, span)
  expire(key, pexp)
end
return applied
"""

#: KEYS: one hash per entity. ARGV: pexpire ms, hop, prune span, the 1-based positions of the
#: count fields in a tile value (comma-separated, '' = no guard), then per key: n and n pairs
#: (tile_start, absolute state). A state whose count is lower than the stored one at any
#: position is skipped (an older state re-emitted after a Flink restore). Returns tile fields
#: written.
WRITE_TILES_MONOTONIC = PRELUDE + r"""
local pexp, hop, span = ARGV[1], ARGV[2], tonumber(ARGV[3])
local pos = {}
for p in string.gmatch(ARGV[4], '%d+') do pos[#pos + 1] = tonumber(p) end
local at, written = 5, 0
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  local pend, order = {}, {}
  for j = 1, n do
    local field = hop .. ':' .. ARGV[at + 2 * j - 1]
    local value = ARGV[at + 2 * j]
    local old = pend[field]
    if old == nil then old = redis.call('HGET', key, field) end
    local ok = true
    if old and #pos > 0 then
      local a, b = split(old), split(value)
      if #a == #b then
        for _, i in ipairs(pos) do
          local x, y = a[i], b[i]
          if x == '' then x = '0' end
          if y == '' then y = '0' end
          if icmp(y, x) < 0 then ok = false; break end
        end
      end
    end
    if ok then
      if pend[field] == nil then order[#order + 1] = field end
      pend[field] = value
      written = written + 1
    end
  end
  if #order > 0 then
    local sets = {}
    for _, f in ipairs(order) do sets[#sets + 1] = f; sets[#sets + 1] = pend[f] end
    redis.call('HSET', key, unpack(sets))
    prune(key, hop, span)
    expire(key, pexp)
  end
  at = at + 1 + 2 * n
end
return written
"""

#: KEYS: one hash per entity. ARGV: pexpire ms, hop, prune span, guard field ('' = none), seq,
#: then per key: n, a prune flag ('1': some tile is new; '0': every tile exists, so the key's
#: newest tile does not move and pruning, done at every earlier write, has nothing to do) and
#: n triples (field, the value the client merged from: '' = absent, otherwise '=' .. value,
#: the merged value). The client merged the deltas (the same
#: algebra as MERGE_TILES); this script applies a call only if every field still holds the
#: value it was merged from, checked for every key before anything is written, so the call is
#: atomic like MERGE_TILES. Returns the keys applied, or -1 (nothing written) when a field
#: changed since the client read it: the client then falls back to MERGE_TILES.
MERGE_WRITE = PRELUDE + r"""
local pexp, hop, span = ARGV[1], ARGV[2], tonumber(ARGV[3])
local gfield, seq = ARGV[4], ARGV[5]
local at, todo = 6, {}
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  local fields = {}
  for j = 1, n do fields[j] = ARGV[at + 1 + 3 * j - 2] end
  if gfield ~= '' then fields[n + 1] = gfield end
  local cur = redis.call('HMGET', key, unpack(fields))
  if not (gfield ~= '' and cur[n + 1] and icmp(seq, cur[n + 1]) <= 0) then
    for j = 1, n do
      local want, got = ARGV[at + 1 + 3 * j - 1], cur[j]
      if want == '' then
        if got then return -1 end
      elseif (not got) or got ~= want:sub(2) then
        return -1
      end
    end
    todo[#todo + 1] = {key, at + 1, n, ARGV[at + 1] == '1'}
  end
  at = at + 2 + 3 * n
end
for _, t in ipairs(todo) do
  local key, a, n = t[1], t[2], t[3]
  local sets = {}
  for j = 1, n do
    sets[#sets + 1] = ARGV[a + 3 * j - 2]
    sets[#sets + 1] = ARGV[a + 3 * j]
  end
  if gfield ~= '' then sets[#sets + 1] = gfield; sets[#sets + 1] = seq end
  redis.call('HSET', key, unpack(sets))
  if t[4] then prune(key, hop, span) end
  expire(key, pexp)
end
return #todo
"""

#: KEYS: one hash per entity. ARGV: guard field ('' = none), then per key: n and n fields.
#: Returns one flat array: per key the guard value (when a guard is given) and the n values
#: (nil = absent). Read-only: the many-key read of the client-side merge in one reply.
READ_FIELDS = r"""
local gfield, at, out = ARGV[1], 2, {}
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[at])
  local fields = {}
  if gfield ~= '' then fields[1] = gfield end
  for j = 1, n do fields[#fields + 1] = ARGV[at + j] end
  local got = redis.call('HMGET', key, unpack(fields))
  for j = 1, #fields do out[#out + 1] = got[j] end
  at = at + 1 + n
end
return out
"""

#: KEYS: one hash per entity. ARGV: guard field ('' = none), seq, pexpire ms ('' = none),
#: then per key: n, m, e ('1': set the expiry), n pairs (tile field, absolute state) and m
#: tile fields to delete (pruned). The caller merged the states and is the tiles' only writer
#: (a runner with a tile cache, :mod:`braid.online.tilecache`), so nothing is compared: the
#: states, the guard and the pruning of a key land in one atomic step. Returns keys written.
WRITE_STATES = r"""
local gfield, seq, pexp = ARGV[1], ARGV[2], ARGV[3]
local at = 4
for _, key in ipairs(KEYS) do
  local n, m, e = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 2]
  local lo = at + 3
  local hi = lo + 2 * n - 1
  for a = lo, hi, 1000 do  -- unpack has a stack limit; the guard rides on the first HSET
    if a == lo and gfield ~= '' then
      redis.call('HSET', key, gfield, seq, unpack(ARGV, a, math.min(hi, a + 999)))
    else
      redis.call('HSET', key, unpack(ARGV, a, math.min(hi, a + 999)))
    end
  end
  for a = hi + 1, hi + m, 1000 do
    redis.call('HDEL', key, unpack(ARGV, a, math.min(hi + m, a + 999)))
  end
  if e == '1' and pexp ~= '' then redis.call('PEXPIRE', key, pexp) end
  at = hi + m + 1
end
return #KEYS
"""

#: KEYS: hashes. Returns one flat array: per key its field count, then its fields and values
#: (``HGETALL`` of many keys in one reply: the client parses one array, not one per key).
READ_HASHES = r"""
local out = {}
for _, key in ipairs(KEYS) do
  local got = redis.call('HGETALL', key)
  out[#out + 1] = #got
  for j = 1, #got do out[#out + 1] = got[j] end
end
return out
"""
