package redisstore

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var lua embed.FS

// The scripts, each loaded once per Redis (EVALSHA, falling back to EVAL
// when a restarted Redis no longer knows it: redis.Script.Run).
var (
	postScript    = load("post")
	takeScript    = load("take")
	putBackScript = load("putback")
	ackScript     = load("ack")
	unclaimScript = load("unclaim")
	rateScript    = load("ratelimit")
)

// load builds a script from lua/common.lua and lua/<name>.lua: one chunk,
// so the shared functions are local to it.
func load(name string) *redis.Script {
	common, err := lua.ReadFile("lua/common.lua")
	if err != nil {
		panic(err)
	}
	body, err := lua.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(common) + "\n" + string(body))
}
