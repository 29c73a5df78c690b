#!/usr/bin/env bash
# Install Carebox from this checkout onto Raspberry Pi OS / Debian 12, as root. Idempotent:
# run it again after `git pull` to upgrade; it never overwrites /etc/carebox/carebox.toml.
#
#   sudo hardware/install.sh                 install or upgrade this machine
#   sudo hardware/install.sh --mqtt-tools    also install mosquitto-clients (field checks)
#   hardware/install.sh --root DIR           write the files under DIR instead of /, and only
#                                            print the commands that would change the system
#                                            (apt, users, venv); used by the tests
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
MQTT_TOOLS=0
SERVICE_USER=carebox
PREFIX=/opt/carebox
VENV=$PREFIX/venv
CONFIG_DIR=/etc/carebox
CONFIG=$CONFIG_DIR/carebox.toml
UNIT_DIR=/etc/systemd/system
BLUEZ_CONF=/etc/bluetooth/main.conf

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --root=*) ROOT=${1#--root=}; shift ;;
        --mqtt-tools) MQTT_TOOLS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "carebox-install: $*"; }

# Commands that change the system itself: run them, or only print them under --root.
run() {
    if [ -n "$ROOT" ]; then
        say "would run: $*"
    else
        "$@"
    fi
}

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT=$(cd "$ROOT" && pwd)
elif [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo hardware/install.sh), or with --root DIR" >&2
    exit 1
fi

# install_file SRC DEST MODE: copy when the content or mode differs; say what happened.
install_file() {
    local src=$1 dest=$ROOT$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
        say "unchanged $2"
        return 1
    fi
    install -D -m "$mode" "$src" "$dest" || { echo "install.sh: cannot install $2" >&2; exit 1; }
    say "installed $2"
}

# 1. Debian packages (only when something is missing: no network needed for a re-run).
packages=(python3 python3-venv bluez fake-hwclock)
if [ "$MQTT_TOOLS" -eq 1 ]; then packages+=(mosquitto-clients); fi
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ -n "$ROOT" ]; then
    say "would run: apt-get install -y --no-install-recommends ${packages[*]}"
elif [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "unchanged packages (${packages[*]})"
fi

# 2. The service user: no login, no home of its own, in group bluetooth for BlueZ's D-Bus API.
if [ -z "$ROOT" ] && getent passwd "$SERVICE_USER" >/dev/null; then
    say "unchanged user $SERVICE_USER"
else
    run useradd --system --user-group --home-dir /var/lib/carebox --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
if [ -z "$ROOT" ] && id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx bluetooth; then
    say "unchanged group bluetooth for $SERVICE_USER"
else
    run usermod -a -G bluetooth "$SERVICE_USER"
fi

# 3. The venv and the package, from this checkout (a copy, not an editable install).
if [ -n "$ROOT" ] || [ ! -x "$VENV/bin/python" ]; then
    run python3 -m venv "$VENV"
fi
run "$VENV/bin/pip" install --quiet --upgrade pip
run "$VENV/bin/pip" install --quiet --upgrade "$SRC"
install_file "$SRC/hardware/README.md" "$PREFIX/README.md" 0644 || true

# 4. Configuration: a skeleton if there is none; an existing file is never touched.
mkdir -p "$ROOT$CONFIG_DIR"
chmod 0750 "$ROOT$CONFIG_DIR"
if [ -e "$ROOT$CONFIG" ]; then
    say "unchanged $CONFIG (kept as it is)"
else
    install -m 0640 "$SRC/hardware/carebox.toml" "$ROOT$CONFIG"
    say "installed $CONFIG (skeleton: run \`carebox provision init\` to complete it)"
fi
run chown root:"$SERVICE_USER" "$CONFIG_DIR" "$CONFIG"

# 5. BlueZ settings; the distribution's file is kept once as main.conf.carebox-orig.
bluez_changed=0
if [ -f "$ROOT$BLUEZ_CONF" ] && [ ! -e "$ROOT$BLUEZ_CONF.carebox-orig" ] \
    && ! cmp -s "$SRC/hardware/bluez/main.conf" "$ROOT$BLUEZ_CONF"; then
    cp -p "$ROOT$BLUEZ_CONF" "$ROOT$BLUEZ_CONF.carebox-orig"
    say "kept the original as $BLUEZ_CONF.carebox-orig"
fi
if install_file "$SRC/hardware/bluez/main.conf" "$BLUEZ_CONF" 0644; then bluez_changed=1; fi

# 6. The unit, and the /dev/vcio drop-in only when the OTP key provider is configured.
unit_changed=0
if install_file "$SRC/hardware/systemd/carebox.service" "$UNIT_DIR/carebox.service" 0644; then
    unit_changed=1
fi
dropin=$UNIT_DIR/carebox.service.d/rpi-otp.conf
if grep -Eq '^[[:space:]]*key_provider[[:space:]]*=[[:space:]]*"rpi-otp"' "$ROOT$CONFIG"; then
    if install_file "$SRC/hardware/systemd/carebox-rpi-otp.conf" "$dropin" 0644; then
        unit_changed=1
    fi
elif [ -e "$ROOT$dropin" ]; then
    rm -f "$ROOT$dropin"
    unit_changed=1
    say "removed $dropin"
fi

if [ -n "$ROOT" ]; then
    # systemctl edits only symlinks under --root: safe, and it checks the [Install] section.
    systemctl --root="$ROOT" --quiet enable carebox.service
    say "enabled carebox.service under $ROOT"
else
    if [ "$unit_changed" -eq 1 ]; then systemctl daemon-reload; fi
    systemctl --quiet enable carebox.service
    if [ "$bluez_changed" -eq 1 ]; then systemctl try-restart bluetooth.service; fi
    # An upgrade restarts a running service; a fresh box starts once provisioned.
    systemctl try-restart carebox.service
    if ! systemctl --quiet is-active carebox.service; then
        say "enabled; start it with \`systemctl start carebox\` once \`carebox provision init\` is done"
    fi
fi
say "done"
