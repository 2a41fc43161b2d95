-- wrk script for the bench. Environment:
--   BENCH_METHOD  GET (default) or HEAD
--   BENCH_ACCEPT  Accept header to send (optional)
--   BENCH_PATHS   file with one request path per line; the requests cycle through them.
--                 Without it wrk sends its URL's path, a request it builds once.
-- done() prints one line `WRKJSON {...}` with counts and latency percentiles in microseconds.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end

local pathsFile = os.getenv("BENCH_PATHS")
if pathsFile and pathsFile ~= "" then
  local paths = {}
  for line in io.lines(pathsFile) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  local requests = {}
  local n = 0
  -- Runs per thread (each has its own Lua state) after wrk has set the Host header.
  function init(args)
    for i, p in ipairs(paths) do
      requests[i] = wrk.format(nil, p)
    end
    -- Threads start at different places in the list.
    n = math.random(#requests) - 1
  end
  function request()
    n = n % #requests + 1
    return requests[n]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"mean_us":%.1f,"max_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
