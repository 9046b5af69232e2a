-- Prints one machine-readable line with wrk's results for bench/run.sh:
-- exact latency percentiles, every error counter and, for the distinct
-- workload (distinct.lua), how many tokens the threads used and had.
-- Loaded by wrk on its own for the bare and cached workloads (whose request
-- is static), and by distinct.lua.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

function done(summary, latency, requests)
   local used, available, exhausted = 0, 0, 0
   for _, t in ipairs(threads) do
      used = used + (t:get("used") or 0)
      available = available + (t:get("available") or 0)
      exhausted = exhausted + (t:get("exhausted") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d"
         .. " err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d"
         .. " tokens_used=%d tokens_available=%d exhausted=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout,
      used, available, exhausted))
end
