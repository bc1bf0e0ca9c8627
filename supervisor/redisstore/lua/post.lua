-- post: ARGV[1] body, [2] max queue length, [3] TTL µs, [4] lease µs,
-- [5] "1" to take the oldest message for a waiter of the posting node,
-- [6] the mailbox's wake-up channel, [7] the posting node's id, [8] the
-- prefix of a node's channel, [9] the mailbox's id in hex, [10] the
-- command that publishes the wake-up (PUBLISH, or SPUBLISH in a Cluster).
-- Returns {sequence or -1 when full, queue length after the post,
-- expired, reclaimed, taken entry or false, length after the take}.
--
-- When another node's waiters wait here (KEYS[5]), the oldest message is
-- leased to that node and published on its channel with the mailbox's
-- id and the length after it ("<hex>,<length>,<entry>"): it needs no
-- take. No subscriber (the node died or lost its connection) leaves the
-- message queued and forgets the node.
local now = clock()
local ttl, leaseUS = tonumber(ARGV[3]), tonumber(ARGV[4])
local keepMS = math.floor(ttl / 1000) + 1
local back = reclaim(now, keepMS)
local expired = dropExpired(now, ttl)
local n = redis.call('LLEN', KEYS[1])
if n >= tonumber(ARGV[2]) then
	return {-1, n, expired, back, false, 0}
end
local seq = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', seq), 'PX', keepMS + math.floor(leaseUS / 1000))
redis.call('RPUSH', KEYS[1], string.format('%.0f,%.0f,', seq, now) .. ARGV[1])
redis.call('PEXPIRE', KEYS[1], keepMS)
n = n + 1
local taken, left = false, n
if ARGV[5] == '1' then
	taken, left = lease(now, leaseUS)
end
if left > 0 then
	local node = redis.call('GET', KEYS[5])
	if node and node ~= ARGV[7] then
		local e = redis.call('LPOP', KEYS[1])
		if redis.call('PUBLISH', ARGV[8] .. node, ARGV[9] .. ',' .. (left - 1) .. ',' .. e) > 0 then
			leaseEntry(e, now, leaseUS)
			left = left - 1
		else
			redis.call('LPUSH', KEYS[1], e)
			redis.call('DEL', KEYS[5])
		end
	end
end
if left > 0 then
	redis.call(ARGV[10], ARGV[6], '')
end
return {seq, n, expired, back, taken, left}
