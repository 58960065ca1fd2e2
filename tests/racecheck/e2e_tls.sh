#!/usr/bin/env bash
# e2e_tls.sh RACECHECK - racecheck over TLS against a local nginx.
#
# A self-signed certificate (CN and SAN localhost / 127.0.0.1) and a client
# CA-signed pair are made at test time; nginx listens on 127.0.0.1 with TLS
# and asks for a client certificate on one port. Checked: https targets,
# SNI, certificate verification (refused by default, accepted with
# config.tls.ca or -k / rejectUnauthorized: false), Secure cookies sent over
# TLS, client certificates, burst and bench. nginx is stopped by PID.
set -uo pipefail
rc=$(readlink -f "$1")
tmp=$(mktemp -d)
pid=""
fail=0
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
check() { # check NAME WANT_EXIT COMMAND...
  local name=$1 want=$2
  shift 2
  "$@" >"$tmp/out" 2>&1
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $got, want $want"
    sed 's/^/    /' "$tmp/out" | tail -15
    fail=1
  else
    echo "ok   $name"
  fi
}

cd "$tmp" || exit 1
openssl req -x509 -newkey rsa:2048 -nodes -keyout srv.key -out srv.pem -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null || exit 1
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 \
  -subj "/CN=racecheck test client CA" 2>/dev/null || exit 1
openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=client" \
  2>/dev/null || exit 1
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem \
  -days 1 2>/dev/null || exit 1

# two free ports (nginx cannot bind port 0 and tell us)
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r port mport <<<"$ports"
cat >nginx.conf <<CONF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/b; proxy_temp_path $tmp/p; fastcgi_temp_path $tmp/f;
  uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
  ssl_certificate $tmp/srv.pem;
  ssl_certificate_key $tmp/srv.key;
  server {
    listen 127.0.0.1:$port ssl;
    keepalive_requests 1000000;
    default_type application/json;
    location / { return 200 '{"ok":true}'; }
    location /login { add_header Set-Cookie "sid=42; Secure; Path=/"; return 302 /me; }
    location /me { return 200 '{"cookie":"\$http_cookie","sni":"\$ssl_server_name"}'; }
  }
  server {
    listen 127.0.0.1:$mport ssl;
    ssl_client_certificate $tmp/ca.pem;
    ssl_verify_client on;
    default_type application/json;
    location / { return 200 '{"client":"\$ssl_client_s_dn"}'; }
  }
}
CONF
nginx -c "$tmp/nginx.conf" -p "$tmp" &
pid=$!
for _ in $(seq 1 50); do
  curl -sk "https://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done

cat >login.yml <<YML
config:
  target: https://localhost:$port
  tls: {ca: ca-srv.pem}
  phases: [{burst: {connections: 4}}]
scenarios:
  - flow:
      - get:
          url: /login
          expect:
            - statusCode: 200
            - expr: "json.cookie == 'sid=42' && json.sni == 'localhost'"
invariants:
  - expect: "status[302] == 4 && status[200] == 4"
YML
cp srv.pem ca-srv.pem
cat >client.yml <<YML
config:
  target: https://127.0.0.1:$mport
  tls: {rejectUnauthorized: false, cert: client.pem, key: client.key}
  phases: [{burst: {connections: 2}}]
scenarios:
  - flow:
      - get: {url: /, expect: [{statusCode: 200}, {expr: "json.client == 'CN=client'"}]}
YML
sed 's/, cert: client.pem, key: client.key//' client.yml >nocert.yml

check "verified, SNI, redirect, Secure cookie" 0 "$rc" run -q login.yml
check "self-signed refused by default" 1 "$rc" burst -q -n 2 "https://127.0.0.1:$port/" \
  --expect 'status[200] == 2'
"$rc" burst -n 2 "https://127.0.0.1:$port/" 2>&1 | grep -q "ETLS: 2" ||
  { echo "FAIL the refused handshakes are not reported as ETLS"; fail=1; }
check "-k accepts it" 0 "$rc" burst -q -k -n 8 "https://127.0.0.1:$port/" \
  --expect 'status[200] == 8'
check "client certificate" 0 "$rc" run -q client.yml
check "no client certificate" 1 "$rc" run -q nocert.yml
check "bench over TLS" 0 "$rc" bench -q -k -c 8 -t 1 -d 0.5s -o "$tmp/b.json" \
  "https://127.0.0.1:$port/"
grep -q '"errors": 0' "$tmp/b.json" || { echo "FAIL bench had errors"; fail=1; }
exit $fail
