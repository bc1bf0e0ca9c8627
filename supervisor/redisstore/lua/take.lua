-- take: ARGV[1] TTL µs, [2] lease µs.
-- Returns {entry or false, length after the take, expired, reclaimed}.
local now = clock()
local ttl = tonumber(ARGV[1])
local back = reclaim(now, math.floor(ttl / 1000) + 1)
local expired = dropExpired(now, ttl)
local taken, left = lease(now, tonumber(ARGV[2]))
return {taken, left, expired, back}
