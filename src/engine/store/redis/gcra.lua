-- GCRA for every limit of one request, atomically: all consumed or none.
-- KEYS: one state key per limit. ARGV: 4 per limit: interval_us, limit_us, block_us, shadow.
-- A state is the theoretical arrival time in microseconds on Redis' clock (TIME), negative
-- while the key serves a block period. Returns {now_us, old state of each key}; the caller
-- recomputes the same decision (remaining, waits) from these with the same arithmetic.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local old, denied = {}, {}
local admitted = true
for i = 1, n do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  old[i] = v
  local interval, limit = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2])
  local base = math.max(math.abs(v), now)
  denied[i] = base + interval - now > limit
  if denied[i] and ARGV[4 * i] == '0' then admitted = false end
end
for i = 1, n do
  local interval, limit = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2])
  local block, shadow = tonumber(ARGV[4 * i - 1]), ARGV[4 * i] == '1'
  if admitted and not denied[i] then
    local tat = math.max(math.abs(old[i]), now) + interval
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1)
  elseif not admitted and denied[i] and not shadow and block > 0 and old[i] >= 0 then
    local tat = now + block + (limit - interval)
    if tat > old[i] then
      redis.call('SET', KEYS[i], string.format('%d', -tat), 'PX', math.floor((tat - now) / 1000) + 1)
    end
  end
end
local out = { now }
for i = 1, n do out[i + 1] = old[i] end
return out
