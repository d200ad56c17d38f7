#!/usr/bin/env bash
# Fleet benchmark: `synprov plan` and a no-op `synprov apply --files-only` against 1, 10, 50,
# 200 and 500 sshd instances on loopback, each host with the guide's deployment (33 files), measured
# in the same run as the floor: OpenSSH's client opening one session and running `true` on
# every host with the same parallelism. Prints times, the ratio to the floor and synprov's
# peak memory. Asserts nothing.
#
#   scripts/bench-fleet.sh                    # 1 10 50 200 500 hosts, default parallelism
#   scripts/bench-fleet.sh 5 20               # other sizes
#   PARALLEL="10 25 50" scripts/bench-fleet.sh 500   # several parallelisms (floor alike)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/synprov-target}"
export PATH="/usr/sbin:/sbin:$PATH"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 10 50 200 500)
# synprov's default (`[rollout] parallel`), unless told.
read -r -a parallels <<< "${PARALLEL:-$(grep -oP 'const DEFAULT_PARALLEL: u32 = \K[0-9]+' src/inventory/validate.rs)}"

command -v sshd >/dev/null || { echo "needs sshd: apt-get install openssh-server" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -q
synprov="$CARGO_TARGET_DIR/release/synprov"

work=$(mktemp -d /tmp/synprov-bench.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
export SYNPROV_MASTER_KEY=benchmark-master-key-0123456789abcdef

max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
base_port=$((22000 + RANDOM % 10000))
: > "$work/known_hosts"
for i in $(seq "$max"); do
    port=$((base_port + i))
    cat > "$work/sshd_$i.conf" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd_$i.pid
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication no
LogLevel ERROR
CONF
    /usr/sbin/sshd -D -e -f "$work/sshd_$i.conf" 2>/dev/null &
    pids+=($!)
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" >> "$work/known_hosts"
done
sleep 1

seconds() { local start=$1 end=$2; awk "BEGIN { printf \"%.2f\", ($end - $start) / 1e9 }"; }

printf '| hosts | parallel | floor (ssh + true) | plan | ratio | no-op apply | ratio | its CPU | peak memory |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in "${sizes[@]}"; do
for parallel in "${parallels[@]}"; do
    inventory="$work/fleet-$n.toml"
    {
        printf '[defaults]\nuser = "root"\nidentity_file = "%s"\n[rollout]\nparallel = %d\n\n' "$work/client_key" "$parallel"
        for i in $(seq "$n"); do
            printf '[hosts.h%d]\naddress = "127.0.0.1"\nport = %d\n[deployments.d%d]\nserver_name = "h%d.example"\nhost = "h%d"\ndeploy_dir = "%s/deploy/%d"\n\n' \
                "$i" $((base_port + i)) "$i" "$i" "$i" "$work" "$i"
        done
    } > "$inventory"
    # The first deployment, once per size: what is measured is the no-op.
    [ "$parallel" != "${parallels[0]}" ] ||
        "$synprov" apply --files-only --json --known-hosts "$work/known_hosts" "$inventory" > /dev/null

    start=$(date +%s%N)
    seq "$n" | xargs -P "$parallel" -I{} sh -c "ssh -q -o BatchMode=yes -o UserKnownHostsFile=$work/known_hosts -i $work/client_key -p \$(($base_port + {})) root@127.0.0.1 true"
    floor=$(seconds "$start" "$(date +%s%N)")

    start=$(date +%s%N)
    "$synprov" plan --json --known-hosts "$work/known_hosts" "$inventory" > /dev/null
    plan=$(seconds "$start" "$(date +%s%N)")

    start=$(date +%s%N)
    /usr/bin/time -f '%M %U %S' -o "$work/rss" "$synprov" apply --files-only --json --known-hosts "$work/known_hosts" "$inventory" > /dev/null
    noop=$(seconds "$start" "$(date +%s%N)")
    rss_mb=$(awk '{ printf "%.1f", $1 / 1024 }' "$work/rss")
    cpu=$(awk '{ printf "%.1f", $2 + $3 }' "$work/rss")

    printf '| %d | %d | %s s | %s s | %.2fx | %s s | %.2fx | %s s | %s MiB |\n' "$n" "$parallel" "$floor" "$plan" \
        "$(awk "BEGIN { print $plan / $floor }")" "$noop" "$(awk "BEGIN { print $noop / $floor }")" "$cpu" "$rss_mb"
done
done
