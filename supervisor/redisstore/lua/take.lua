-- take: ARGV[1] TTL µs, [2] lease µs, [3] the taking node's id when its
-- waiters wait here ("" otherwise), [4] how long that lasts in ms.
-- Returns {entry or false, length after the take, expired, reclaimed}.
-- A take that finds the queue empty for a node with waiters names the
-- node in KEYS[5], so that the next post is pushed to it (post.lua).
local now = clock()
local ttl = tonumber(ARGV[1])
local back = reclaim(now, math.floor(ttl / 1000) + 1)
local expired = dropExpired(now, ttl)
local taken, left = lease(now, tonumber(ARGV[2]))
if not taken and ARGV[3] ~= '' then
	redis.call('SET', KEYS[5], ARGV[3], 'PX', ARGV[4])
end
return {taken, left, expired, back}
