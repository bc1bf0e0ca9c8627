-- acknowledge: ARGV[1] sequence. Forgets the lease of a delivered message.
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('ZREM', KEYS[3], ARGV[1])
