-- POST /inventory/purchase of one unit of the hot item (bench/writes.bench.sh)
wrk.method = "POST"
wrk.body = '{"itemId":"hot","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
