-- unclaim: ARGV[1] a node's id. The node's waiters no longer wait here:
-- forget it, unless another node has named itself since.
if redis.call('GET', KEYS[5]) == ARGV[1] then
	redis.call('DEL', KEYS[5])
end
return 0
