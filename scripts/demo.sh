#!/usr/bin/env bash
# quid demo: two subscribers behind a router running quid, an upstream host, real traffic in
# both directions over IPv4 and IPv6, and quid's per-subscriber table next to what the senders
# themselves counted. Everything lives in network namespaces created here and removed on exit,
# also on Ctrl-C. Addresses come from the documentation and shared (CGNAT) ranges only.
#
# Alice's Raspberry Pi is a real `quid-node` agent in a namespace of its own: it meters a CPU
# burner in a cgroup, a storage reservation and its grid interface, and reports every minute.
#
# Usage: scripts/demo.sh PATH_TO_QUID PATH_TO_QUID_NODE   (as root; `cargo xtask demo` builds
# both and runs it)
set -euo pipefail

QUID=${1:?usage: demo.sh PATH_TO_QUID PATH_TO_QUID_NODE}
QUID_NODE=${2:?usage: demo.sh PATH_TO_QUID PATH_TO_QUID_NODE}
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates network namespaces and loads XDP programs)" >&2; exit 1; }

SUB=quid-demo-sub
RTR=quid-demo-rtr
UP=quid-demo-up
PI=quid-demo-pi
WORK=$(mktemp -d /tmp/quid-demo.XXXXXX)
QUID_PID=
NODE_PID=
# The grid workload's cgroup, in a cgroup v2 mount of the demo's own: the agent runs under
# `ip netns exec`, which mounts a new /sys (and so hides /sys/fs/cgroup) for its namespace.
CG_MNT=$WORK/cgroup2
CG=$CG_MNT/quid-demo-grid

cleanup() {
    set +e
    if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill -TERM "$NODE_PID"
        wait "$NODE_PID" 2>/dev/null
    fi
    if [ -n "$QUID_PID" ] && kill -0 "$QUID_PID" 2>/dev/null; then
        kill -TERM "$QUID_PID"
        wait "$QUID_PID" 2>/dev/null
    fi
    for ns in $SUB $RTR $UP $PI; do ip netns del "$ns" 2>/dev/null; done
    [ -d $CG ] && rmdir $CG
    mountpoint -q $CG_MNT && umount $CG_MNT
    rm -rf /sys/fs/bpf/quid-demo "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM

# A previous demo killed with SIGKILL may have left its namespaces behind.
for ns in $SUB $RTR $UP $PI; do ip netns del "$ns" 2>/dev/null || true; done
rm -rf /sys/fs/bpf/quid-demo 2>/dev/null || true

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
quiet_v6() {
    # No router solicitations or DAD: the demo's own pings should be the only subscriber traffic.
    nsx "$1" sh -c 'for k in accept_dad router_solicitations accept_ra; do echo 0 > /proc/sys/net/ipv6/conf/default/$k; done'
}

echo "== building the topology: $SUB and $PI <-> $RTR (quid) <-> $UP"
for ns in $SUB $RTR $UP $PI; do ip netns add "$ns"; nsx "$ns" ip link set lo up; quiet_v6 "$ns"; done
ip -n $SUB link add eth0 type veth peer name acc netns $RTR
ip -n $UP link add eth0 type veth peer name core netns $RTR
for pair in "$SUB eth0" "$RTR acc" "$RTR core" "$UP eth0"; do set -- $pair; ip -n "$1" link set "$2" up; done
mac() { nsx "$1" cat "/sys/class/net/$2/address"; }
SUB_MAC=$(mac $SUB eth0); ACC_MAC=$(mac $RTR acc); CORE_MAC=$(mac $RTR core); UP_MAC=$(mac $UP eth0)
nsx $RTR sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'

# Subscribers: alice 100.64.10.2 + 2001:db8:10::/56, bob 100.64.10.3 + 2001:db8:11::/56.
ip -n $SUB addr add 100.64.10.2/24 dev eth0
ip -n $SUB addr add 100.64.10.3/24 dev eth0
ip -n $SUB addr add 2001:db8:10::2/64 dev eth0 nodad
ip -n $SUB addr add 2001:db8:11::2/64 dev eth0 nodad
ip -n $SUB route add default via 100.64.10.1
ip -n $SUB -6 route add default via fe80::1 dev eth0
ip -n $RTR addr add 100.64.10.1/24 dev acc
ip -n $RTR addr add fe80::1/64 dev acc nodad
ip -n $RTR -6 route add 2001:db8:10::/56 dev acc
ip -n $RTR -6 route add 2001:db8:11::/56 dev acc
ip -n $RTR addr add 192.0.2.1/24 dev core
ip -n $RTR addr add 2001:db8:ff::1/64 dev core nodad
ip -n $UP addr add 192.0.2.2/24 dev eth0
ip -n $UP addr add 192.0.2.130/24 dev eth0     # a grid worker: 192.0.2.128/25 is the grid
ip -n $UP addr add 2001:db8:ff::2/64 dev eth0 nodad
ip -n $UP route add 100.64.0.0/10 via 192.0.2.1
ip -n $UP -6 route add 2001:db8:10::/47 via 2001:db8:ff::1
# Static neighbours: no ARP or neighbour discovery sent from subscriber addresses.
ip -n $SUB neigh replace 100.64.10.1 lladdr "$ACC_MAC" dev eth0 nud permanent
ip -n $SUB neigh replace fe80::1 lladdr "$ACC_MAC" dev eth0 nud permanent
for a in 100.64.10.2 100.64.10.3 2001:db8:10::2 2001:db8:11::2; do
    ip -n $RTR neigh replace $a lladdr "$SUB_MAC" dev acc nud permanent
done
ip -n $RTR neigh replace 192.0.2.2 lladdr "$UP_MAC" dev core nud permanent
ip -n $RTR neigh replace 192.0.2.130 lladdr "$UP_MAC" dev core nud permanent
ip -n $RTR neigh replace 2001:db8:ff::2 lladdr "$UP_MAC" dev core nud permanent
ip -n $UP neigh replace 192.0.2.1 lladdr "$CORE_MAC" dev eth0 nud permanent
ip -n $UP neigh replace 2001:db8:ff::1 lladdr "$CORE_MAC" dev eth0 nud permanent

# Alice's Pi (100.64.11.2): its grid interface eth0 carries only grid traffic (IPv6 off, static
# neighbours), what its agent counts; the reports go over a separate link, mgmt, which quid
# does not meter.
ip -n $PI link add eth0 type veth peer name pi netns $RTR
ip -n $PI link add mgmt type veth peer name pimgmt netns $RTR
for pair in "$PI eth0" "$RTR pi" "$PI mgmt" "$RTR pimgmt"; do
    set -- $pair
    nsx "$1" sysctl -q -w "net.ipv6.conf.$2.disable_ipv6=1"
    ip -n "$1" link set "$2" up
done
ip -n $PI addr add 100.64.11.2/24 dev eth0
ip -n $RTR addr add 100.64.11.1/24 dev pi
ip -n $PI addr add 198.51.100.2/30 dev mgmt
ip -n $RTR addr add 198.51.100.1/30 dev pimgmt
ip -n $PI route add 192.0.2.128/25 via 100.64.11.1
ip -n $PI route add 100.64.10.1/32 via 198.51.100.1
PI_MAC=$(mac $PI eth0); RPI_MAC=$(mac $RTR pi)
PIM_MAC=$(mac $PI mgmt); RPIM_MAC=$(mac $RTR pimgmt)
ip -n $PI neigh replace 100.64.11.1 lladdr "$RPI_MAC" dev eth0 nud permanent
ip -n $RTR neigh replace 100.64.11.2 lladdr "$PI_MAC" dev pi nud permanent
ip -n $PI neigh replace 198.51.100.1 lladdr "$RPIM_MAC" dev mgmt nud permanent
ip -n $RTR neigh replace 198.51.100.2 lladdr "$PIM_MAC" dev pimgmt nud permanent

cat > "$WORK/subscribers.csv" <<'CSV'
id,name,plan,prefixes
alice,Alice's farm,home-50,100.64.10.2 100.64.11.2 2001:db8:10::/56
bob,Bob's workshop,biz-100,100.64.10.3 2001:db8:11::/56
CSV
# Alice's Raspberry Pi supplies compute to the grid and reports it, signed with its own key:
# `quid-node init` makes the key and prints the line for the router's nodes file.
mkdir "$CG_MNT" "$WORK/pi"
mount -t cgroup2 none "$CG_MNT"
mkdir $CG
cat > "$WORK/node.toml" <<TOML
node = "alice-pi"
router = "http://100.64.10.1:9465"
key = "$WORK/pi/node.key"
state_dir = "$WORK/pi"
period_secs = 60
sample_secs = 5

[cpu]
cgroup = "$CG"

[storage]
dir = "$WORK/pi/grid"
reserve_bytes = 67108864

[grid]
interface = "eth0"
TOML
NODE_LINE=$("$QUID_NODE" --config "$WORK/node.toml" init --subscriber alice --max-watts 15)
printf 'node,subscriber,public_key,cpu_cores,storage_bytes,max_watts\n%s\n' "$NODE_LINE" > "$WORK/nodes.csv"
echo "== quid-node init printed the nodes-file line: $NODE_LINE"
cat > "$WORK/quid.toml" <<TOML
[daemon]
interval_secs = 1
state_dir = "$WORK/state"
pin_dir = "/sys/fs/bpf/quid-demo"
on_stop = "detach"

[subscribers]
file = "subscribers.csv"
capacity = 1024
prefix_capacity = 1024
pool_v4_entries = 65536
pool_v6_entries = 65536

[grid]
prefixes = ["192.0.2.128/25"]

[reports]
listen = "100.64.10.1:9465"
nodes = "nodes.csv"

[tariff]                      # micro-credits
cpu_core_hour = 36000000      # 10,000 per core-second, so the demo's seconds show
download_internet_gb = 1000000000
upload_internet_gb = 500000000

[settlement]
tolerance_percent = 5
tolerance_bytes = 1000

[[interface]]
name = "acc"
role = "access"

[[interface]]
name = "pi"
role = "access"

[[interface]]
name = "core"
role = "core"
TOML

echo "== starting quid in $RTR"
# nsenter switches only the network namespace (quid keeps the host's bpffs for its pins) and
# execs quid, so $! is quid's own pid.
nsenter --net=/run/netns/$RTR "$QUID" run --config "$WORK/quid.toml" 2> "$WORK/quid.log" &
QUID_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/state/totals.json" ] && break
    kill -0 $QUID_PID 2>/dev/null || { cat "$WORK/quid.log"; echo "demo: quid failed to start" >&2; exit 1; }
    sleep 0.1
done
sed 's/^/   quid: /' "$WORK/quid.log"

echo "== starting quid-node in $PI (reports every 60 s, on the minute)"
# `ip netns exec` (not nsenter): it mounts the namespace's own /sys, where the agent reads its
# grid interface's counters; it execs the agent, so $! is the agent's pid.
nsx $PI "$QUID_NODE" --config "$WORK/node.toml" run 2> "$WORK/node.log" &
NODE_PID=$!
sleep 1
kill -0 $NODE_PID 2>/dev/null || { cat "$WORK/node.log"; echo "demo: quid-node failed to start" >&2; exit 1; }

# Each flow: namespace, name, subscriber, family, source, destination, count, ICMP payload
# bytes. The Pi's pings to the grid worker are alice's grid traffic.
FLOWS="$PI alice-grid alice 4 100.64.11.2 192.0.2.130 20 472
$SUB alice-v4 alice 4 100.64.10.2 192.0.2.2 20 56
$SUB alice-v6 alice 6 2001:db8:10::2 2001:db8:ff::2 15 1000
$SUB bob-v4 bob 4 100.64.10.3 192.0.2.2 10 1400
$SUB bob-v6 bob 6 2001:db8:11::2 2001:db8:ff::2 25 200"

echo "== sending traffic for about 4 seconds (ping, both directions, IPv4 and IPv6; alice's Pi to a grid worker), the Pi's grid workload burning 2 s of CPU"
PINGS=()
while read -r ns name sub fam src dst count size; do
    nsx "$ns" ping -"$fam" -q -n -c "$count" -i 0.15 -W 1 -s "$size" -I "$src" "$dst" > "$WORK/$name.ping" 2>&1 &
    PINGS+=($!)
done <<< "$FLOWS"
# The grid workload: a bounded CPU burner in the grid cgroup.
sh -c "echo \$\$ > $CG/cgroup.procs; exec timeout 2 sh -c 'while :; do :; done'" || true
wait "${PINGS[@]}" || true
TRAFFIC_END=$(date -u +%s)
sleep 1.5   # one more counter interval

echo
echo "== quid's per-subscriber totals (quid subscribers, while it runs)"
"$QUID" subscribers --config "$WORK/quid.toml"
totals=$("$QUID" subscribers --json --config "$WORK/quid.toml")

echo "== what the senders counted (IP bytes: ICMP payload + 8 + 20 for IPv4, + 40 for IPv6)"
declare -A UPP UPB DNP DNB
while read -r ns name sub fam src dst count size; do
    stats=$(grep -E "packets transmitted" "$WORK/$name.ping")
    sent=$(echo "$stats" | awk '{print $1}'); got=$(echo "$stats" | awk '{print $4}')
    hdr=$([ "$fam" = 4 ] && echo 28 || echo 48)
    printf '   %-9s sent %3d, answered %3d, %5d IP bytes each\n' "$name" "$sent" "$got" $((size + hdr))
    UPP[$sub]=$(( ${UPP[$sub]:-0} + sent )); UPB[$sub]=$(( ${UPB[$sub]:-0} + sent * (size + hdr) ))
    DNP[$sub]=$(( ${DNP[$sub]:-0} + got )); DNB[$sub]=$(( ${DNB[$sub]:-0} + got * (size + hdr) ))
done <<< "$FLOWS"

echo
ok=1
for sub in alice bob; do
    want="${UPP[$sub]} ${UPB[$sub]} ${DNP[$sub]} ${DNB[$sub]}"
    # The exact figures from the JSON (the table shows bytes with units): up packets, up
    # bytes, down packets, down bytes, both classes together.
    got=$(echo "$totals" | jq -r --arg id "$sub" \
        '.subscribers[] | select(.id == $id) | "\(.upload.packets) \(.upload.bytes) \(.download.packets) \(.download.bytes)"')
    if [ "$want" = "$got" ]; then verdict="exact"; else verdict="MISMATCH"; ok=0; fi
    printf '   %-6s expected up %s pkts / %s B, down %s pkts / %s B; quid counted %s: %s\n' "$sub" ${want} "$got" "$verdict"
done
[ $ok -eq 1 ] && echo "== every subscriber's count matches the senders' own count, in both directions" || { echo "== counts differ" >&2; exit 1; }

# The Pi's agent reports on the minute: wait for the report whose period holds the traffic to
# be settled against the router's meter. (Its sent bytes come out 14 a packet short: with quid's
# XDP program on the peer, the kernel counts the Pi's veth transmissions without the Ethernet
# header the agent takes off; the settlement tolerance covers it.)
stats=$(grep -E "packets transmitted" "$WORK/alice-grid.ping")
GRID_BYTES=$(( ($(echo "$stats" | awk '{print $1}') + $(echo "$stats" | awk '{print $4}')) * 500 ))
echo
echo "== waiting for alice-pi's report of the minute that holds the traffic ($GRID_BYTES grid IP bytes sent by its pings), up to 90 s"
settled=
for _ in $(seq 450); do
    settled=$("$QUID" node reports alice-pi --json --config "$WORK/quid.toml" | jq -c --argjson t "$TRAFFIC_END" \
        '[.reports[] | select((.period_end | fromdateiso8601) >= $t and .outcome != "pending")] | first // empty')
    [ -n "$settled" ] && break
    kill -0 $NODE_PID 2>/dev/null || { cat "$WORK/node.log"; echo "demo: quid-node stopped" >&2; exit 1; }
    sleep 0.2
done
[ -n "$settled" ] || { cat "$WORK/node.log"; echo "demo: no settled report from alice-pi" >&2; exit 1; }
echo "== alice-pi's reports as the router recorded them (quid node reports alice-pi)"
"$QUID" node reports alice-pi --config "$WORK/quid.toml" | sed 's/^/   /'
echo "== the agent's own view (quid-node status)"
"$QUID_NODE" --config "$WORK/node.toml" status | sed 's/^/   /'
echo
echo "== alice's ledger (quid ledger show alice): the settled reports' credit (usage is debited once a day; until then it shows as pending)"
"$QUID" ledger show alice --config "$WORK/quid.toml" | sed 's/^/   /'
echo "== balances (quid balance), and the hash chain (quid ledger verify)"
"$QUID" balance --config "$WORK/quid.toml" | sed 's/^/   /'
"$QUID" ledger verify --config "$WORK/quid.toml" | sed 's/^/   /'

echo "== stopping quid (SIGTERM: final read, then detach)"
kill -TERM $QUID_PID
wait $QUID_PID || { cat "$WORK/quid.log"; echo "demo: quid did not stop cleanly" >&2; exit 1; }
QUID_PID=
grep -E "alice-pi#|SIGTERM|detached" "$WORK/quid.log" | sed 's/^/   quid: /'
