-- POST /broadcast for wrk (Debian package `wrk`), a lighter load generator than k6, to measure
-- the gateway's own publish capacity on a machine where k6 would be the bottleneck:
--
--   API_KEY=... wrk -t1 -c32 -d8s --latency -s loadtest/wrk/publish.lua http://127.0.0.1:PORT/broadcast
wrk.method = "POST"
wrk.body = '{"channel":"bench","event":"bench","data":{"n":1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("API_KEY") or ""
