#!/usr/bin/env bash
# Installs what building quid's eBPF programs needs, only what is missing, quietly when
# nothing is: the nightly toolchain with rust-src, LLVM 22 (rustc's LLVM) and bpf-linker
# built against it, plus the small tools the tests and the demo use (iproute2).
set -euo pipefail

say() { printf 'bootstrap: %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages ${missing[*]}: run this script as root, or install them with apt-get"
        exit 1
    fi
    if [ $apt_updated -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# rustup may live in ~/.cargo/bin without being on PATH in a non-login shell.
export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null || { say "rustup not found: install Rust with rustup first"; exit 1; }

for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        say "adding $component to the default toolchain"
        rustup component add "$component" >/dev/null 2>&1
    fi
done
if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal -q >/dev/null
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    say "adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly >/dev/null 2>&1
fi

# prometheus brings promtool too: the metrics tests run both for real.
# g++ builds libFuzzer (cargo fuzz); systemd brings systemd-analyze, which checks the packaged unit;
# lintian checks the package (cargo xtask dist); jq reads `quid subscribers --json` in the demo;
# chromium renders `quid report --html` headless in its test.
# postgresql brings the server binaries the shared-store tests start in a temporary directory
# (its system service is never used: no "main" cluster is made, so none is started).
if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed' \
    && [ "$(id -u)" -eq 0 ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
fi
# gcc-aarch64-linux-gnu and qemu-user cross-build the node agent's arm64 package and run its
# binary here (cargo xtask dist). freeradius-utils: radclient plays the NAS in the RADIUS tests.
# tcpreplay replays a crafted PPPoE session (the kernel has no PPP for a real pppd session).
apt_install llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev iproute2 iputils-ping util-linux prometheus g++ binutils systemd lintian jq chromium postgresql gcc-aarch64-linux-gnu qemu-user freeradius-utils tcpreplay
if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
    say "adding the aarch64-unknown-linux-gnu target (the node agent's arm64 package)"
    rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1
fi

# Kea (the DHCP server whose lease files quid follows) and dhclient for the DHCP test, which
# starts both itself in namespaces; Kea's system services are never used, so on a machine run
# by systemd they are left disabled and stopped.
kea_was_installed=1
dpkg-query -W -f='${Status}' kea-dhcp4-server 2>/dev/null | grep -q 'install ok installed' || kea_was_installed=0
apt_install kea-dhcp4-server kea-dhcp6-server isc-dhcp-client
if [ $kea_was_installed -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now kea-dhcp4-server kea-dhcp6-server >/dev/null 2>&1 || true
fi

# FreeRADIUS: the billing server the accounting-out test starts itself in a namespace, with a
# config of its own; the system service is never used, so it is left disabled and stopped.
freeradius_was_installed=1
dpkg-query -W -f='${Status}' freeradius 2>/dev/null | grep -q 'install ok installed' || freeradius_was_installed=0
apt_install freeradius
if [ $freeradius_was_installed -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now freeradius >/dev/null 2>&1 || true
fi

# bpf-linker must link against the LLVM that rustc uses (22); a linker built against another
# LLVM fails with bitcode errors, so check how the installed one was built.
need_linker=1
if command -v bpf-linker >/dev/null && ldd "$(command -v bpf-linker)" 2>/dev/null | grep -q 'libLLVM.so.22'; then
    need_linker=0
fi
if [ $need_linker -eq 1 ]; then
    say "building bpf-linker against LLVM 22 (about a minute and a half)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --locked -q \
        --no-default-features --features llvm-22 >/dev/null
fi

# cargo-fuzz for the fuzz targets (`cargo xtask fuzz`, and a short run in the tests).
if ! command -v cargo-fuzz >/dev/null; then
    say "installing cargo-fuzz (about 30 s)"
    cargo install cargo-fuzz --locked -q >/dev/null
fi

# bpffs for pinned maps and links. quid mounts it itself when it is missing, but the tests start
# several daemons at once: mounting it here first keeps two of them from stacking two mounts.
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "bpffs is not mounted at /sys/fs/bpf: run this script as root, or mount -t bpf bpf /sys/fs/bpf"
        exit 1
    fi
    say "mounting bpffs at /sys/fs/bpf"
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf
fi
