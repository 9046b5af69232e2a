package cluster

import "github.com/redis/go-redis/v9"

// Redis key layout, all under one hash tag so one script touches one slot
// of a Redis Cluster:
//
//	{prefix}:log    stream of changes; fields n (counter), o (origin id), s (the origin's seq), node (name), c (change JSON)
//	{prefix}:live   hash: entry id -> entry JSON, the live entries (the snapshot)
//	{prefix}:gone   hash: entry id -> expires_at (unix s, 0 never), entries deleted in this epoch
//	{prefix}:exp    sorted set: "l"<id> and "g"<id> scored by expires_at, to prune live and gone
//	{prefix}:epoch  random id, set (NX) by the first node that finds it missing
//	{prefix}:n      the counter in n: consecutive, so a gap tells a reader the log was trimmed past it
//	{prefix}:orig   hash: origin id -> "<p> <stream id>" of the last change run for that origin
//	{prefix}:<name> a channel's stream (see Channel): fields o (origin id), node (name), d (message)
const (
	kLog = iota
	kLive
	kGone
	kExp
	kEpoch
	kCounter
	kOrig
	nKeys
)

var keyNames = [nKeys]string{"log", "live", "gone", "exp", "epoch", "n", "orig"}

// publishScript applies one change to the live set and appends it to the
// log, atomically.
//
//	ARGV: 1 epoch the node synced with, 2 origin, 3 p (0: no dedup),
//	      4 op (put, del, sync), 5 entry id, 6 expires_at (unix s, 0 never),
//	      7 entry JSON, 8 change JSON, 9 node name, 10 MAXLEN, 11 "~" for
//	      approximate trimming, 12 seconds an expired entry is kept,
//	      13 the origin's seq (0 for sync)
//	returns {"add", new stream id} | {"skip", last stream id} | {"dup", bound}
//
// A put of an entry already live with the same or a later expiry changes
// nothing and is not appended: the log carries only changes to the live
// set, and the readers' copies already have it (max expiry wins on both
// sides). A delete is always appended, so nodes still holding the entry
// drop it even when Redis had lost it. sync is the republish of a node's
// entry after an epoch change: a put, unless the entry was deleted in this
// epoch. The epoch must be the node's: a node writes only into a Redis it
// has synced with (republished its entries to).
var publishScript = redis.NewScript(`
local log, live, gone, exp, epoch, counter, orig = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
if redis.call('GET', epoch) ~= ARGV[1] then
	return redis.error_reply('EPOCH the cluster epoch is not the one this node synced with')
end
local p = tonumber(ARGV[3])
if p > 0 then
	local last = redis.call('HGET', orig, ARGV[2])
	if last then
		local sp = string.find(last, ' ', 1, true)
		if p <= tonumber(string.sub(last, 1, sp - 1)) then
			return {'dup', string.sub(last, sp + 1)}
		end
	end
end
local function tail()
	local r = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
	if #r == 0 then return '0-0' end
	return r[1][1]
end
local function done(status, id)
	if p > 0 then redis.call('HSET', orig, ARGV[2], ARGV[3] .. ' ' .. id) end
	return {status, id}
end

local now = redis.call('TIME')
local cut = tonumber(now[1]) - tonumber(ARGV[12])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', cut, 'LIMIT', 0, 16)) do
	if string.sub(m, 1, 1) == 'l' then
		redis.call('HDEL', live, string.sub(m, 2))
	else
		redis.call('HDEL', gone, string.sub(m, 2))
	end
	redis.call('ZREM', exp, m)
end

local id, x = ARGV[5], tonumber(ARGV[6])
if ARGV[4] == 'del' then
	redis.call('HDEL', live, id)
	redis.call('ZREM', exp, 'l' .. id)
	redis.call('HSET', gone, id, ARGV[6])
	if x > 0 then redis.call('ZADD', exp, x, 'g' .. id) else redis.call('ZREM', exp, 'g' .. id) end
else
	if ARGV[4] == 'sync' and redis.call('HEXISTS', gone, id) == 1 then
		return done('skip', tail())
	end
	if redis.call('HEXISTS', live, id) == 1 then
		local s = redis.call('ZSCORE', exp, 'l' .. id)
		if not s or (x > 0 and x <= tonumber(s)) then
			return done('skip', tail())
		end
	end
	redis.call('HSET', live, id, ARGV[7])
	redis.call('HDEL', gone, id)
	redis.call('ZREM', exp, 'g' .. id)
	if x > 0 then redis.call('ZADD', exp, x, 'l' .. id) else redis.call('ZREM', exp, 'l' .. id) end
end

local n = redis.call('INCR', counter)
local xid
if ARGV[11] == '~' then
	xid = redis.call('XADD', log, 'MAXLEN', '~', ARGV[10], '*', 'n', n, 'o', ARGV[2], 's', ARGV[13], 'node', ARGV[9], 'c', ARGV[8])
else
	xid = redis.call('XADD', log, 'MAXLEN', ARGV[10], '*', 'n', n, 'o', ARGV[2], 's', ARGV[13], 'node', ARGV[9], 'c', ARGV[8])
end
return done('add', xid)
`)
