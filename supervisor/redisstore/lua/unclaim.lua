-- unclaim: ARGV[1] a node's claim. The node's waiters no longer wait
-- here.
dropClaim(ARGV[1])
return 0
