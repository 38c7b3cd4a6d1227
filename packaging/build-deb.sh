#!/usr/bin/env bash
# Builds skylan_<version>_<arch>.deb with dpkg-deb alone (no debhelper).
#
#   packaging/build-deb.sh [--binary PATH] [--out DIR] [--compress xz|gzip|zstd|none]
#
# Without --binary it builds the release binary first (cargo build --release --locked).
# The package holds:
#   /usr/bin/skylan
#   /lib/systemd/system/skylan-node.service, skylan-root.service
#   /usr/share/man/man1/skylan*.1.gz             (skylan man --out)
#   bash, zsh and fish completions               (skylan completions SHELL)
#   /usr/share/doc/skylan/{copyright,README.md}
# and nothing under /etc, so it has no conffiles: settings live in the state directory
# (/var/lib/skylan/local.toml), extra daemon flags in the optional
# /etc/default/skylan-node or /etc/default/skylan-root that the admin writes.
#
# Services are neither enabled nor started on install, unlike most Debian daemons: a node
# cannot start before it has a planet file (/var/lib/skylan/planet) and a root needs an
# identity the admin publishes first, so starting them at once would only fail. The
# maintainer scripts reload systemd after install and removal and stop the services
# when the package is removed; purging keeps /var/lib/skylan and /var/lib/skylan-root
# (they hold identities that cannot be recreated).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/debian"
compress="xz"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --compress) compress="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$binary" ]; then
    cargo build --release --locked
    binary="target/release/skylan"
fi
[ -x "$binary" ] || { echo "build-deb.sh: $binary is not an executable" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/skylan_${version}_${arch}"

install -D -m 0755 "$binary" "$root/usr/bin/skylan"
for unit in packaging/systemd/*.service; do
    install -D -m 0644 "$unit" "$root/lib/systemd/system/$(basename "$unit")"
done
mkdir -p "$root/usr/share/man/man1"
"$binary" man --out "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
completion() { # shell, path inside the package
    mkdir -p "$(dirname "$root/$2")"
    "$binary" completions "$1" >"$root/$2"
    chmod 0644 "$root/$2"
}
completion bash usr/share/bash-completion/completions/skylan
completion zsh usr/share/zsh/vendor-completions/_skylan
completion fish usr/share/fish/vendor_completions.d/skylan.fish
install -D -m 0644 README.md "$root/usr/share/doc/skylan/README.md"
cat >"$root/usr/share/doc/skylan/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: skylan

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF

mkdir -p "$root/DEBIAN"
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
# The newest glibc symbol version the binary asks for (what dpkg-shlibdeps would find,
# without needing dpkg-dev); Rust's unwinder also links libgcc_s.
glibc=$(grep -ao 'GLIBC_2\.[0-9.]*' "$binary" | sort -uV | tail -n 1 | sed 's/^GLIBC_//')
cat >"$root/DEBIAN/control" <<EOF
Package: skylan
Version: $version
Architecture: $arch
Maintainer: skylan maintainers <skylan@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= ${glibc:-2.17}), libgcc-s1
Section: net
Priority: optional
Description: end-to-end encrypted virtual Ethernet overlay
 One binary for the node daemon (TAP devices, managed addresses and routes,
 local API), root servers (planet and moon), a ZeroTier-compatible network
 controller and the flow-rules language. Ships systemd units skylan-node and
 skylan-root, which are neither enabled nor started on install.
EOF
# Reload systemd so it sees the units; stop them before the binary goes away.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop skylan-node.service skylan-root.service || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/skylan_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
