-- rate limit: a source's token bucket shared by every node, as GCRA:
-- KEYS[1] holds the bucket's theoretical arrival time in µs (Redis'
-- clock). ARGV[1] µs per token, [2] burst, [3] tokens wanted.
-- Returns {tokens granted (0 when refused), tokens left as text}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local per, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local have = burst - (tat - now) / per
if have < 1 then
	return {0, string.format('%.3f', have)}
end
local n = math.min(want, math.floor(have))
tat = tat + n * per
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {n, string.format('%.3f', have - n)}
