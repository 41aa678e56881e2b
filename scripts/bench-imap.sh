#!/usr/bin/env bash
# IMAP benchmark, msgr side by side with Dovecot in one run (issue 14, README Performance):
#   - the cycle: S sessions looping login, SELECT INBOX, FETCH the headers of the last 100 messages,
#     APPEND one, SEARCH, LOGOUT (msgr-load imap), rounds alternating between the two servers; then the
#     same cycle with one login per session (CLOSE instead of LOGOUT), which leaves the password hash out;
#   - memory per idle signed-in IMAP session (msgr-load mail-idle, both measured the same way: the
#     proportional set size of the server's process tree, so Dovecot's process per session counts whole);
#   - a 10,000-message Inbox: SELECT, then FETCH of every message's header fields.
# Both servers hold the same users with the same password hash: msgr's argon2id PHC string (19 MiB,
# t=2, p=1), copied from msgr's database into Dovecot's passwd-file as {ARGON2ID}, so each LOGIN
# costs one argon2id verification of the same cost in both (msgr: RustCrypto's argon2 on its hashing
# threads; Dovecot: libsodium in its auth worker processes). Dovecot's auth cache stays off.
# Both fill the same Inboxes through IMAP APPEND of the same generated messages.
#
# Dovecot (Debian's dovecot-imapd) is installed if missing (services are not started or changed), then
# runs as a private instance: its own configuration, base and state directories in a temporary
# directory, listening on a free loopback port, plaintext LOGIN allowed (loopback only), users in a
# passwd-file, mail in sdbox. It runs as the invoking user, or as the system user `dvbench` (created
# if missing) when invoked as root, since Dovecot refuses to serve mail as root.
# Usage: scripts/bench-imap.sh [SESSIONS] [CYCLES] [IDLE_SESSIONS] [BIG]
#   (NO_BUILD=1: use the release binaries as built)
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=${1:-10}
CYCLES=${2:-20}
IDLE=${3:-1000}
BIG=${4:-10000}
PW=password

if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/imap ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dovecot-imapd >/dev/null
fi
if [ "$(id -u)" -eq 0 ]; then
    DV_USER=dvbench
    id "$DV_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$DV_USER"
    # runuser's PAM session sets the soft descriptor limit back to 1024; the hard limit stays.
    as_dv() { runuser -u "$DV_USER" -- sh -c 'ulimit -n "$(ulimit -Hn)"; exec "$@"' sh "$@"; }
else
    DV_USER=$(id -un)
    as_dv() { sh -c 'ulimit -n "$(ulimit -Hn)"; exec "$@"' sh "$@"; }
fi
DV_GROUP=$(id -gn "$DV_USER")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MSGR_PORT=$(free_port)
DV_PORT=$(free_port)

DATA=$(mktemp -d /tmp/msgr-bench-imap.XXXXXX)
DV=$(mktemp -d /tmp/dovecot-bench-imap.XXXXXX)
cleanup() {
    [ -n "${MSGR_PID:-}" ] && kill "$MSGR_PID" 2>/dev/null
    [ -n "${DV_PID:-}" ] && as_dv dovecot -c "$DV/dovecot.conf" stop 2>/dev/null && sleep 1
    if [ -n "${KEEP:-}" ]; then echo "kept $DATA $DV" >&2; else rm -rf "$DATA" "$DV"; fi
}
trap cleanup EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p msgr -p msgr-load
load=target/release/msgr-load

# Users: user0..user{S-1} for the cycle, idle@ for the idle sessions, big@ for the large Inbox.
users="idle@bench.test big@bench.test"
for i in $(seq 0 $((SESSIONS - 1))); do users="$users user$i@bench.test"; done
for u in $users; do target/release/msgr --data "$DATA" user add "$u" --password "$PW" >/dev/null; done
cat > "$DATA/msgr.toml" <<TOML
[mail]
allow_plaintext_auth = true
max_connections_per_ip = $((IDLE + 100))
max_connections = $((IDLE + 1000))
TOML

# Dovecot: the same users, the same argon2id hashes.
mkdir -p "$DV/run" "$DV/state" "$DV/home"
sqlite3 "$DATA/msgr.sqlite" "SELECT email || ':{ARGON2ID}' || password_hash FROM accounts" > "$DV/passwd"
cat > "$DV/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $DV/run
state_dir = $DV/state
instance_name = dovecot-bench-$$
log_path = $DV/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 0
default_login_user = $DV_USER
default_internal_user = $DV_USER
default_internal_group = $DV_GROUP
first_valid_uid = 1
mail_location = sdbox:~/mail
passdb {
  driver = passwd-file
  args = $DV/passwd
}
userdb {
  driver = static
  args = uid=$DV_USER gid=$DV_GROUP home=$DV/home/%u
}
default_process_limit = $((IDLE + 500))
default_client_limit = $((4 * IDLE + 2000))
# Dovecot's high-performance login mode (its documentation's advice for busy servers): login processes
# are reused instead of forked per connection.
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DV_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
  chroot =
}
service anvil {
  chroot =
}
service auth {
  user = $DV_USER
}
service auth-worker {
  user = $DV_USER
}
service stats {
  unix_listener stats-reader {
    user = $DV_USER
  }
  unix_listener stats-writer {
    user = $DV_USER
  }
}
protocol imap {
  mail_max_userip_connections = $((IDLE + 100))
}
CONF
chown -R "$DV_USER:$DV_GROUP" "$DV"

start_msgr() {
    target/release/msgr --config "$DATA/msgr.toml" --data "$DATA" serve --msnp 127.0.0.1:0 \
        --http 127.0.0.1:0 --https 127.0.0.1:0 --smtp off --submission off --submissions off \
        --pop3 off --pop3s off --imap "127.0.0.1:$MSGR_PORT" --imaps off 2>"$DATA/serve.log" &
    MSGR_PID=$!
    for _ in $(seq 100); do grep -q 'listening imap=' "$DATA/serve.log" && return; sleep 0.1; done
    echo "msgr did not start:" >&2; cat "$DATA/serve.log" >&2; exit 1
}
stop_msgr() { kill "$MSGR_PID"; wait "$MSGR_PID" || true; MSGR_PID=; }
start_dovecot() {
    as_dv dovecot -F -c "$DV/dovecot.conf" &
    DV_PID=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $DV_PORT), 1)" 2>/dev/null && return
        sleep 0.1
    done
    echo "Dovecot did not start:" >&2; cat "$DV/dovecot.log" >&2; exit 1
}
stop_dovecot() { as_dv dovecot -c "$DV/dovecot.conf" stop; wait "$DV_PID" || true; DV_PID=; }

echo "== $(date -u '+%F %T UTC'); load: $(uptime | sed 's/.*load average: //'); $(nproc) cores"
echo "== msgr $(git rev-parse --short HEAD) on 127.0.0.1:$MSGR_PORT; $(dovecot --version | cut -d' ' -f1 | sed 's/^/Dovecot /') on 127.0.0.1:$DV_PORT (sdbox, running as $DV_USER)"
start_msgr
start_dovecot
echo "== Password hashing: both verify the same argon2id PHC string per LOGIN: $(cut -d'$' -f2-4 "$DV/passwd" | head -1 | tr '$' ' ')"
echo "   (msgr: [limits] hash_threads default = $(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 )) thread(s); Dovecot: auth worker processes, auth cache off)"
echo "   one LOGIN on the idle server, 5 sequential cycles of 1 session (login latency = one verification + a round trip):"
for s in msgr dovecot; do
    port=$MSGR_PORT; [ $s = dovecot ] && port=$DV_PORT
    $load imap --addr "127.0.0.1:$port" --user 'user0@bench.test' --password "$PW" --sessions 1 --cycles 5 \
        --label "$s" | grep -E 'server|login'
done

echo "== IMAP cycle: $SESSIONS sessions x $CYCLES cycles (login, SELECT, 100 headers, APPEND, SEARCH, LOGOUT), alternating rounds"
for round in 1 2; do
    $load imap --addr "127.0.0.1:$MSGR_PORT" --user 'user{}@bench.test' --password "$PW" \
        --sessions "$SESSIONS" --cycles "$CYCLES" --label msgr
    $load imap --addr "127.0.0.1:$DV_PORT" --user 'user{}@bench.test' --password "$PW" \
        --sessions "$SESSIONS" --cycles "$CYCLES" --label dovecot
done
echo "== The same cycle with one login per session (no password hash in the loop; CLOSE between cycles)"
for round in 1 2; do
    $load imap --addr "127.0.0.1:$MSGR_PORT" --user 'user{}@bench.test' --password "$PW" \
        --sessions "$SESSIONS" --cycles $((CYCLES * 5)) --login-once --label msgr
    $load imap --addr "127.0.0.1:$DV_PORT" --user 'user{}@bench.test' --password "$PW" \
        --sessions "$SESSIONS" --cycles $((CYCLES * 5)) --login-once --label dovecot
done

echo "== $BIG-message Inbox: SELECT, then FETCH (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]) of 1:*"
for s in msgr dovecot; do
    port=$MSGR_PORT; [ $s = dovecot ] && port=$DV_PORT
    $load imap --addr "127.0.0.1:$port" --user 'big@bench.test' --password "$PW" --sessions 1 --cycles 3 \
        --login-once --prefill "$BIG" --fetch 0 --label "$s" | grep -vE 'append|search|login'
done

echo "== Memory per idle signed-in session: $IDLE sessions, fresh servers, one warm-up sign-in first"
echo "   (the proportional set size of each server's whole process tree, before and after)"
stop_msgr; start_msgr
stop_dovecot; start_dovecot
for s in msgr dovecot; do
    if [ $s = msgr ]; then port=$MSGR_PORT; pid=$MSGR_PID; else port=$DV_PORT; pid=$DV_PID; fi
    echo "-- $s"
    # The warm-up sign-in: msgr's hashing thread keeps its 19 MiB argon2 area, Dovecot starts an auth
    # worker; neither is per-session memory.
    $load mail-idle --addr "127.0.0.1:$port" --protocol imap --count 1 --hold 0 \
        --user idle@bench.test --password "$PW" >/dev/null
    $load mail-idle --addr "127.0.0.1:$port" --protocol imap --count "$IDLE" --hold 3 \
        --user idle@bench.test --password "$PW" --server-pid "$pid" --server-tree
done
echo "== done: $(date -u '+%T UTC'); load: $(uptime | sed 's/.*load average: //')"
