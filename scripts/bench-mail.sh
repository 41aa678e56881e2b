#!/usr/bin/env bash
# Mail benchmarks, msgr side by side with the standard peer in one run (README, Performance):
#   - SMTP: S concurrent senders delivering N messages of SIZE bytes to msgr's MX listener and to
#     Postfix's smtpd on this machine; both answer 250 only after the message is on disk (msgr:
#     its group-committed SQLite transaction; Postfix: its fsynced queue file).
#   - POP3: msgr's download rate of the mailbox the SMTP run filled; IMAP: msgr-load's imap cycle.
#   - Memory: msgr's resident memory per idle SMTP and POP3 session.
# Installs Postfix from Debian's packages if missing and reconfigures the machine's Postfix to
# listen on 127.0.0.1:2626 (loopback only) and deliver bench.test to a Maildir: run it on a
# development or benchmark machine, not on a mail server. Needs root for that.
# Usage: scripts/bench-mail.sh [SENDERS] [MESSAGES] [SIZE]   (NO_BUILD=1: use the release binaries as built)
set -euo pipefail
cd "$(dirname "$0")/.."
SENDERS=${1:-20}
MESSAGES=${2:-4000}
SIZE=${3:-4096}
PF_PORT=2626

if ! command -v postfix >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
id pfbench >/dev/null 2>&1 || useradd -m pfbench
postconf -e inet_interfaces=loopback-only inet_protocols=ipv4 myhostname=bench.test \
    mydestination='bench.test, localhost' mynetworks=127.0.0.0/8 home_mailbox=Maildir/ \
    alias_maps= alias_database= smtpd_client_connection_count_limit=0 \
    smtpd_client_connection_rate_limit=0 smtpd_client_message_rate_limit=0 \
    default_process_limit=200 smtpd_banner='$myhostname ESMTP'
postconf -Me "${PF_PORT}/inet=${PF_PORT} inet n - n - - smtpd"
postfix stop >/dev/null 2>&1 || true
postfix start >/dev/null 2>&1
trap 'postfix stop >/dev/null 2>&1 || true; [ -n "${MSGR_PID:-}" ] && kill "$MSGR_PID" 2>/dev/null; rm -rf "${DATA:-/nonexistent}"' EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p msgr -p msgr-load
DATA=$(mktemp -d /tmp/msgr-bench-mail.XXXXXX)
target/release/msgr --data "$DATA" user add bench@bench.test --password password >/dev/null
for i in $(seq 0 $((SENDERS - 1))); do
    target/release/msgr --data "$DATA" user add "user$i@bench.test" --password password >/dev/null
done
# sender_auth = false: this machine has no DNS for the senders' domains, so every SPF/DKIM/DMARC
# check would wait for resolver timeouts; Postfix checks none of them by default either. The spam
# filter stays on (Postfix has none), so msgr does more work per message than its peer here.
cat > "$DATA/msgr.toml" <<TOML
[mail]
sender_auth = false
allow_plaintext_auth = true
max_connections_per_ip = 2000
max_connections = 5000
TOML
# Starts msgr on DATA in the background (MSGR_PID), with the mail ports fixed and the rest on port 0.
start_msgr() {
    target/release/msgr --config "$DATA/msgr.toml" --data "$DATA" serve --msnp 127.0.0.1:0 \
        --http 127.0.0.1:0 --https 127.0.0.1:0 --smtp 127.0.0.1:2525 --submission off \
        --submissions off --pop3 127.0.0.1:2110 --pop3s off --imap 127.0.0.1:2143 --imaps off \
        2>"$DATA/serve.log" &
    MSGR_PID=$!
    for _ in $(seq 50); do grep -q 'listening pop3=' "$DATA/serve.log" && break; sleep 0.1; done
}
stop_msgr() { kill "$MSGR_PID"; wait "$MSGR_PID" || true; MSGR_PID=; }
start_msgr

load=target/release/msgr-load
echo "== SMTP: $SENDERS senders, $MESSAGES messages of $SIZE bytes, one run each, same machine"
for round in 1 2; do
    $load smtp --addr 127.0.0.1:2525 --senders "$SENDERS" --messages "$MESSAGES" --size "$SIZE" \
        --to 'user{}@bench.test' --label msgr
    $load smtp --addr "127.0.0.1:$PF_PORT" --senders "$SENDERS" --messages "$MESSAGES" --size "$SIZE" \
        --to 'pfbench@bench.test' --label postfix
done
echo "== POP3: $SENDERS sessions downloading their maildrops (filled above)"
$load pop3 --addr 127.0.0.1:2110 --user 'user{}@bench.test' --sessions "$SENDERS" --label msgr
echo "== IMAP: 10 sessions looping login, SELECT, 100 headers, APPEND, SEARCH, LOGOUT"
$load imap --addr 127.0.0.1:2143 --user 'user{}@bench.test' --sessions 10 --cycles 20 --label msgr
echo "== Memory per idle session (a fresh server for each protocol: freed memory would be reused)"
for proto in smtp pop3 imap; do
    stop_msgr; start_msgr
    case $proto in smtp) port=2525 ;; pop3) port=2110 ;; imap) port=2143 ;; esac
    count=2000
    if [ "$proto" = imap ]; then
        # IMAP sessions sign in: one sign-in first, so the hashing thread's 19 MiB argon2 area is
        # not counted as per-session memory.
        $load mail-idle --addr "127.0.0.1:$port" --protocol imap --count 1 --hold 0 \
            --user bench@bench.test >/dev/null
    fi
    $load mail-idle --addr "127.0.0.1:$port" --protocol "$proto" --count "$count" \
        --user bench@bench.test --server-pid "$MSGR_PID"
done
