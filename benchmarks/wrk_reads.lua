-- wrk script: GET random resource ids read from the file named in IDS_FILE, with a bearer
-- token from TOKEN; prints p50/p95/p99 in microseconds for the harness to parse.
local ids = {}
local token = os.getenv("TOKEN")
local prefix = os.getenv("PREFIX")
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local counter = 0
request = function()
  counter = counter + 1
  local id = ids[(counter * 7919) % #ids + 1]
  return wrk.format("GET", prefix .. id, {["Authorization"] = token and ("Bearer " .. token) or nil})
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\n", latency:percentile(50),
    latency:percentile(95), latency:percentile(99), summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    summary.duration))
end
