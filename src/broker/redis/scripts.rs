//! The Redis side of the shared broker: key names and the Lua scripts that change several keys
//! at once. Every key carries the hash tag `{sse-gateway}`, so a script may touch any of them
//! under Redis Cluster (one slot).

use std::time::Duration;

pub(super) const SEQ_KEY: &str = "{sse-gateway}:seq";
pub(super) const EPOCH_KEY: &str = "{sse-gateway}:epoch";
pub(super) const LOG_KEY: &str = "{sse-gateway}:log";
pub(super) const PUBSUB_CHANNEL: &str = "{sse-gateway}:events";
/// Present while the cluster re-establishes its log after Redis lost its data (see
/// [`CLAIM_SCRIPT`]): publishes are refused meanwhile.
pub(super) const RECOVERING_KEY: &str = "{sse-gateway}:recovering";

/// What the publish script answers instead of a seq.
pub(super) const PUBLISH_NOT_LEADER: i64 = -1;
pub(super) const PUBLISH_WRONG_EPOCH: i64 = -2;
pub(super) const PUBLISH_RECOVERING: i64 = -3;

/// Appends one event to the log and announces it. Returns its seq, or one of the refusals
/// above. KEYS: sequence, log, epoch, recovering, and for an event read from a source also the
/// source's lease and resume keys. ARGV: event type, channels (comma-separated: channel names
/// cannot hold a comma), data, log length, pub/sub channel, the publishing node's epoch and last
/// seq, and for a source this node's id, the upstream id and the source's name. A source's
/// event carries its source and upstream id in the log too (fields `s`, `u`): after a data loss
/// the log gets them back with the event, and with them the source's resume point.
///
/// The first checks are what make a 202 safe across a Redis restart: Redis must hold the
/// node's epoch and a sequence at or above every id the node has seen, and not be recovering.
/// A Redis that came back empty has none of that until the nodes have restored the cluster's
/// state there (sequence raised, history given back), so a publish that reaches it first is
/// refused instead of reusing a seq, whether or not its node has noticed the restart yet. A
/// source event from a node that no longer holds the lease is refused too: the new leader will
/// read it again.
pub(super) const PUBLISH_SCRIPT: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[6] then return -2 end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[7]) then return -2 end
if redis.call('EXISTS', KEYS[4]) == 1 then return -3 end
if #KEYS == 6 and redis.call('GET', KEYS[5]) ~= ARGV[8] then return -1 end
local seq = redis.call('INCR', KEYS[1])
local source, upstream = '', ''
if #KEYS == 6 then
  source, upstream = ARGV[10], ARGV[9]
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 't', ARGV[1], 'c', ARGV[2], 'd', ARGV[3], 's', source, 'u', upstream)
  redis.call('SET', KEYS[6], upstream)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 't', ARGV[1], 'c', ARGV[2], 'd', ARGV[3])
end
redis.call('PUBLISH', ARGV[5], seq .. '\n' .. ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. source .. '\n' .. upstream .. '\n' .. ARGV[3])
return seq
";

/// Run by a node when it (re)connects: if Redis has no epoch, it lost its data (or this is the
/// first node ever, which [`super::cluster_epoch`] handles at startup), so this node sets its
/// own epoch back and opens the recovery window, during which every surviving node gives its
/// history back to the log before anyone publishes again. KEYS: epoch, recovering. ARGV: this
/// node's epoch, the window in ms. Returns `{1 if it set the epoch, the cluster's epoch}`.
pub(super) const CLAIM_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch then return {0, epoch} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return {1, ARGV[1]}
";

/// How long the recovery window lasts: longer than the slowest reconnect of a surviving node
/// (its replicator retries at least every [`super::MAX_RECONNECT_WAIT`]), so every node that
/// was connected before the loss gives its history back before a new event takes a seq.
pub(super) const RECOVERY_WINDOW: Duration = Duration::from_secs(2);

/// Gives a node's history back to a log that lost it: appends, in order, each event whose seq
/// is above the log's last entry, then raises the sequence to the last one appended, in one
/// step (so no node reading the log sees the sequence ahead of the entries). KEYS: sequence,
/// log. ARGV: log length, then per event: seq, type, channels, data, source and upstream id
/// (both empty for a published event). Returns how many were appended.
pub(super) const RESEED_SCRIPT: &str = r"
local top = 0
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then top = tonumber(string.match(last[1][1], '^(%d+)')) end
local added = 0
for i = 2, #ARGV, 6 do
  local seq = tonumber(ARGV[i])
  if seq > top then
    if ARGV[i + 4] == '' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0', 't', ARGV[i + 1], 'c', ARGV[i + 2], 'd', ARGV[i + 3])
    else
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0', 't', ARGV[i + 1], 'c', ARGV[i + 2], 'd', ARGV[i + 3], 's', ARGV[i + 4], 'u', ARGV[i + 5])
    end
    top = seq
    added = added + 1
  end
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < top then redis.call('SET', KEYS[1], top) end
return added
";

/// The upstream id where source ARGV[1] resumes: its resume key KEYS[1]; when Redis lost it,
/// the newest event of that source among the last ARGV[2] log entries (given back by the nodes
/// after a data loss), which is then kept as the resume key again. A `recovering` error while
/// the nodes are still giving the log back (KEYS[3]), so that no leader starts from scratch
/// meanwhile. KEYS: resume key, log, recovering.
pub(super) const RESUME_SCRIPT: &str = r"
local id = redis.call('GET', KEYS[1])
if id then return id end
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.error_reply('recovering') end
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local source, upstream = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == 's' then source = fields[i + 1] end
    if fields[i] == 'u' then upstream = fields[i + 1] end
  end
  if source == ARGV[1] and upstream then
    redis.call('SET', KEYS[1], upstream)
    return upstream
  end
end
return false
";

/// Raises the sequence to at least ARGV[1]: no id a node has already seen is handed out again.
pub(super) const FLOOR_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

/// Takes the lease KEYS[1] for node ARGV[1] for ARGV[2] ms if it is free, or renews it if this
/// node holds it. Returns 1 when this node holds it afterwards.
pub(super) const LEAD_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
";

/// Frees the lease KEYS[1] if node ARGV[1] holds it.
pub(super) const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

pub(super) fn lease_key(source: &str) -> String {
    format!("{{sse-gateway}}:source:{source}:lease")
}

pub(super) fn resume_key(source: &str) -> String {
    format!("{{sse-gateway}}:source:{source}:resume")
}

/// Takes a place in the connection count hash KEYS[1] (node → count) for node ARGV[1] if the
/// live nodes hold fewer than ARGV[2]; counts of nodes whose liveness key (ARGV[3] .. node) has
/// lapsed are dropped on the way, so a crashed node's streams stop counting within seconds.
/// (The liveness keys share the hash tag, hence the slot.)
pub(super) const HOLD_SCRIPT: &str = r"
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] == ARGV[1] or redis.call('EXISTS', ARGV[3] .. fields[i]) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// Gives back a place of node ARGV[1] in KEYS[1].
pub(super) const UNHOLD_SCRIPT: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
";

/// A token bucket as GCRA on Redis time: KEYS[1] holds the theoretical arrival time (ms).
/// ARGV: emission interval (ms, fractional), burst. Returns 0 when a token was taken, else the
/// milliseconds until one is back.
pub(super) const TOKEN_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat + interval - now - window
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(window + interval))
return 0
";

/// Node reports for `?scope=cluster`: one key per node (lapsing with it) and an index of nodes
/// by the time they last reported.
pub(super) const REPORT_PREFIX: &str = "{sse-gateway}:report:";
pub(super) const REPORTERS_KEY: &str = "{sse-gateway}:reporters";

/// A node's liveness key (refreshed every poll, lapses 5 s after the node dies).
pub(super) const NODE_ALIVE_PREFIX: &str = "{sse-gateway}:node:";
pub(super) const NODE_ALIVE_FOR: Duration = Duration::from_secs(5);
