-- put back: ARGV[1] sequence, [2] TTL µs, [3] the wake-up channel.
-- Returns 1 when the message went back to the head, 0 when its lease had
-- run out (it is back already) or it was acknowledged.
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then
	return 0
end
local e = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if not e then
	return 0
end
redis.call('LPUSH', KEYS[1], e)
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) / 1000) + 1)
redis.call('PUBLISH', ARGV[3], '')
return 1
