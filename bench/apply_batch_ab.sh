#!/bin/bash
# Interleaved A/B of put load on two local clusters at once (issue 10, the apply batch):
# both clusters run side by side and 5 s loadgen phases alternate between them, so load
# from other work lands on both. Prints each phase, each node's "writes:" counters
# (commands per driver cycle) and per side the medians of ops/s, p99 and the first node's CPU
# µs per put.
#   bench/apply_batch_ab.sh NODES ROUNDS CLIENTS "ENV_A" "ENV_B" [CHECKOUT_A] [CHECKOUT_B]
# e.g. this checkout, batch on vs off, 1 node, 16 clients:
#   bench/apply_batch_ab.sh 1 4 16 "" "ASPEN_APPLY_BATCH_SECONDS=0"
# or this checkout vs another (with its own .venv), same environment:
#   bench/apply_batch_ab.sh 1 4 64 "" "" . ../base
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
N=$1; R=$2; C=$3; EA=$4; EB=$5
CA=$(cd "${6:-$HERE}" && pwd); CB=$(cd "${7:-$HERE}" && pwd)
LOADGEN=${LOADGEN:-$HERE/../../shared/bench/loadgen.py}
[ -f "$LOADGEN" ] || LOADGEN=/work/shared/bench/loadgen.py
WORK=$(mktemp -d /tmp/apply-batch-ab.XXXXXX)
start() { # name env port checkout
  (cd "$4" && exec setsid env $2 ASPEN_LOAD_PLUGINS= .venv/bin/aspen dev up --nodes "$N" \
    --data-dir "$WORK/$1" --base-port "$3" > "$WORK/$1.log" 2>&1) &
  echo $! > "$WORK/$1.pid"
}
stop() {
  for n in A B; do kill -- -"$(cat "$WORK/$n.pid")" 2>/dev/null; done
  sleep 2; rm -rf "$WORK"
}
trap stop EXIT
start A "$EA" 7630 "$CA"; start B "$EB" 7930 "$CB"
for _ in $(seq 150); do [ -f "$WORK/A/env" ] && [ -f "$WORK/B/env" ] && break; sleep 0.2; done
sleep 3
for _ in $(seq "$R"); do for n in A B; do
  set -a; . "$WORK/$n/env"; set +a
  P=$(pgrep -f "data-dir $WORK/$n/n" | tr '\n' ',' | sed 's/,$//')
  "$HERE/.venv/bin/python" "$LOADGEN" --target aspen --endpoints "${ASPEN_ENDPOINT%%,*}" \
    --server-pids "$P" --op put --concurrency "$C" --duration 5 --quiet-wait 0 \
    --noisy-retries 0 --label "$n" 2>&1 | grep "^# " | sed "s/^# //; s/ err=0//; s/rep=0: //"
done; done | tee "$WORK/phases"
for n in A B; do
  set -a; . "$WORK/$n/env"; set +a
  echo "$n: $("$HERE/.venv/bin/aspen" status 2>&1 | grep -i 'writes:' | head -3)"
done
awk '/ops\/s/ { l=$1; n[l]++; O[l,n[l]]=$4
    for (i=1;i<=NF;i++) { if ($i ~ /^p99=/) { split($i,a,"="); P[l,n[l]]=a[2] }
                          if ($i ~ /^srv=/) { s=$(i+1); gsub(/[}]/,"",s); S[l,n[l]]=s } }
    C[l,n[l]] = S[l,n[l]] / 100 * 1e6 / $4 }
  function med(x,l,k,  i,j,t,v) { for (i=1;i<=k;i++) v[i]=x[l,i]
    for (i=1;i<=k;i++) for (j=i+1;j<=k;j++) if (v[j]<v[i]) { t=v[i]; v[i]=v[j]; v[j]=t }
    return (k%2) ? v[(k+1)/2] : (v[k/2]+v[k/2+1])/2 }
  END { for (l in n) printf "%s median of %d: %.0f ops/s, p99 %.1f ms, server %.0f us/put\n",
          l, n[l], med(O,l,n[l]), med(P,l,n[l]), med(C,l,n[l]) }' "$WORK/phases"
