-- wrk script: POST one small non-streaming chat completion per request.
-- The body is set once; wrk reuses it on every keep-alive request.
-- BENCH_STREAM=1 in the environment switches to a streamed ("stream": true) request;
-- BENCH_MODEL picks the model (the mock answers "slow-50ms" 50 ms late).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local model = os.getenv("BENCH_MODEL") or "gpt-4o-mini"
if os.getenv("BENCH_STREAM") == "1" then
  wrk.body = '{"model":"' .. model .. '","stream":true,"messages":[{"role":"user","content":"hello"}]}'
else
  wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello"}]}'
end

-- One machine-readable line, so bench.sh does not scrape wrk's human output.
-- Latency values from wrk are in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
    "non2xx=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
