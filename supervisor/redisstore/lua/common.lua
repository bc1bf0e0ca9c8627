-- Shared by every script that changes a mailbox. KEYS[1] is the queue (a
-- list of entries "<sequence>,<arrival µs>,<body>", oldest first),
-- KEYS[2] the sequence counter, KEYS[3] the leases (a sorted set of
-- sequences scored by their deadline in µs), KEYS[4] the leased entries
-- (a hash by sequence), KEYS[5] the node whose waiters wait here (its id,
-- set by a take that found the queue empty). Times are Redis' own clock.
local function clock()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- reclaim puts every message whose lease ran out back at the head, the
-- oldest first, and returns how many came back.
local function reclaim(now, keepMS)
	local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
	if #due == 0 then
		return 0
	end
	table.sort(due, function(a, b) return tonumber(a) > tonumber(b) end)
	for _, seq in ipairs(due) do
		local e = redis.call('HGET', KEYS[4], seq)
		if e then
			redis.call('LPUSH', KEYS[1], e)
		end
		redis.call('HDEL', KEYS[4], seq)
	end
	redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
	redis.call('PEXPIRE', KEYS[1], keepMS)
	return #due
end

-- dropExpired removes the messages the TTL expired from the head and
-- returns how many.
local function dropExpired(now, ttl)
	local n = 0
	while true do
		local e = redis.call('LINDEX', KEYS[1], 0)
		if not e then
			return n
		end
		local arrived = tonumber(string.match(e, '^%d+,(%d+),'))
		if arrived and now - arrived < ttl then
			return n
		end
		redis.call('LPOP', KEYS[1])
		n = n + 1
	end
end

-- dropClaim forgets the node named in KEYS[5] if it is claim: a node
-- that stopped waiting here, unless another has named itself since.
local function dropClaim(claim)
	if redis.call('GET', KEYS[5]) == claim then
		redis.call('DEL', KEYS[5])
	end
end

-- leaseEntry records e, taken from the head, as leased for leaseUS.
local function leaseEntry(e, now, leaseUS)
	local seq = string.match(e, '^(%d+),')
	redis.call('ZADD', KEYS[3], now + leaseUS, seq)
	redis.call('HSET', KEYS[4], seq, e)
	local keep = math.floor(leaseUS / 1000) * 2 + 1000
	redis.call('PEXPIRE', KEYS[3], keep)
	redis.call('PEXPIRE', KEYS[4], keep)
end

-- lease takes the head for leaseUS and returns it with the queue's length
-- after it; false when the queue is empty.
local function lease(now, leaseUS)
	local e = redis.call('LPOP', KEYS[1])
	if not e then
		return false, 0
	end
	leaseEntry(e, now, leaseUS)
	return e, redis.call('LLEN', KEYS[1])
end
