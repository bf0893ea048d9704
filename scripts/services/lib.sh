# Shared by the service scripts (sourced, not run): installing a missing
# server from Debian, and finding free loopback ports. The sourcing script
# defines die().

apt_updated=no
require_binary() { # BINARY DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]]; then
        die "$1 is missing: install the Debian package $2 (apt-get install -y $2) or run this script as root"
    fi
    if [[ $apt_updated == no ]]; then
        apt-get update
        apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$2"
    command -v "$1" >/dev/null 2>&1 || die "$1 is still missing after installing $2"
}

free_ports() { # COUNT: prints COUNT distinct free TCP ports on 127.0.0.1
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to find free ports"
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

