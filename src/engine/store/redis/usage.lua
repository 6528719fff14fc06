-- Usage quota: consume ARGV[1] units if every limit has room (or only read when 0).
-- KEYS[1]: hash {l = lifetime used, w = window used, s = window start (us)}.
-- ARGV: amount, lifetime limit (-1: none), window limit (-1: none), window length (us).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'l', 'w', 's')
local l, w, s = tonumber(h[1] or '0') or 0, tonumber(h[2] or '0') or 0, tonumber(h[3] or '0') or 0
local amount, lifetime, wlimit, wlen = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if wlen > 0 and (now - s >= wlen or w == 0) then w = 0; s = now end
local ok = 1
if lifetime >= 0 and l + amount > lifetime then ok = 0 end
if wlimit >= 0 and w + amount > wlimit then ok = 0 end
if ok == 1 and amount > 0 then
  l = l + amount
  w = w + amount
  redis.call('HSET', KEYS[1], 'l', string.format('%d', l), 'w', string.format('%d', w), 's', string.format('%d', s))
end
return { ok, l, w, s, now }
