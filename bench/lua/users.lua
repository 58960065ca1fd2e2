-- POST /users with a new email on every request (bench/writes.bench.sh).
-- The prefix differs per wrk run (RF_RUN), so reruns on one database
-- create users instead of answering 409.
local n = 0
local run = os.getenv("RF_RUN") or tostring(os.time())
request = function()
  n = n + 1
  return wrk.format("POST", "/users", { ["Content-Type"] = "application/json" },
    '{"email":"bench-' .. run .. '-' .. n .. '@example.com"}')
end
