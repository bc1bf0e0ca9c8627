-- put back: ARGV[1] sequence, [2] TTL µs, [3] the wake-up channel, [4]
-- the putting node's id, [5] the command that publishes the wake-up.
-- Returns 1 when the message went back, 0 when its lease had run out (it
-- is back already) or it was acknowledged. It goes back in sequence
-- order, usually at the head: a node may put back a message after a
-- newer one that had been pushed to it (lua/post.lua). Posts stop pushing
-- to the node: it takes again, from the head, and names itself again
-- when that finds the queue empty, so a push never races its take.
dropClaim(ARGV[4])
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then
	return 0
end
local e = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if not e then
	return 0
end
local seq = tonumber(ARGV[1])
local i, pivot = 0, false
while true do
	local h = redis.call('LINDEX', KEYS[1], i)
	if not h then
		break
	end
	if tonumber(string.match(h, '^(%d+),')) > seq then
		pivot = h
		break
	end
	i = i + 1
end
if pivot and i > 0 then
	redis.call('LINSERT', KEYS[1], 'BEFORE', pivot, e)
elseif pivot or i == 0 then
	redis.call('LPUSH', KEYS[1], e)
else
	redis.call('RPUSH', KEYS[1], e)
end
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[2]) / 1000) + 1)
redis.call(ARGV[5], ARGV[3], '')
return 1
