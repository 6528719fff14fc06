-- wrk script for the many-keys variants of benches/http.sh: every request carries an
-- `x-api-key` header drawn at random (fixed seed) from 100,000 distinct values.
--
-- The 100,000 requests are formatted once in init(), so request() costs one table lookup
-- and one random number; the load generator's own cost stays small and is the same for
-- every server variant it runs against (bare-keys is the baseline that pays it too).

local nkeys = 100000
local requests = {}

function init(args)
  math.randomseed(12345)
  for i = 1, nkeys do
    requests[i] = wrk.format("GET", "/", { ["x-api-key"] = string.format("api-key-%06d", i) })
  end
end

function request()
  return requests[math.random(nkeys)]
end
