#!/bin/sh
# Make the secrets compose.yaml needs, next to this script. Safe to run again: existing
# secrets are kept, and each device named is given a new password.
#
#   ./make-passwords.sh [device-id ...]
#
#   .env                  POSTGRES_PASSWORD, FLEETWATCH_MQTT_PASSWORD and an unguessable
#                         FLEETWATCH_INGEST_SHARED_GROUP; made once, then reused
#   mosquitto/passwd      the broker's password file: user "fleetwatch", plus each device
#   device-passwords.txt  "device-id password" lines to put on the devices
#
# All three are in deploy/.gitignore. Uses mosquitto_passwd if installed, otherwise the
# eclipse-mosquitto:2 image through docker.
set -eu

cd "$(dirname "$0")"
umask 077

random_hex() {
    # 24 random bytes: 192 bits, so the password file's hashes are safe to leak.
    od -An -N24 -tx1 /dev/urandom | tr -d ' \n'
}

mosquitto_passwd_b() {
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        mosquitto_passwd -b mosquitto/passwd "$1" "$2"
    else
        docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/mosquitto:/work" \
            eclipse-mosquitto:2 mosquitto_passwd -b /work/passwd "$1" "$2"
    fi
}

for device in "$@"; do
    # A device id is one MQTT topic level and a Mosquitto username: no / + # : or spaces.
    case "$device" in
        fleetwatch | "" | *[!A-Za-z0-9._-]*)
            echo "refusing device id '$device': use letters, digits, '.', '_' or '-'" >&2
            exit 2
            ;;
    esac
done

if [ ! -f .env ]; then
    {
        echo "POSTGRES_PASSWORD=$(random_hex)"
        echo "FLEETWATCH_MQTT_PASSWORD=$(random_hex)"
        echo "FLEETWATCH_INGEST_SHARED_GROUP=fleetwatch-ingest-$(random_hex | cut -c1-16)"
    } >.env
    echo "wrote .env"
fi
FLEETWATCH_MQTT_PASSWORD=$(sed -n 's/^FLEETWATCH_MQTT_PASSWORD=//p' .env)

[ -f mosquitto/passwd ] || : >mosquitto/passwd
mosquitto_passwd_b fleetwatch "$FLEETWATCH_MQTT_PASSWORD"
for device in "$@"; do
    secret=$(random_hex)
    mosquitto_passwd_b "$device" "$secret"
    echo "$device $secret" >>device-passwords.txt
    echo "added device $device (password in device-passwords.txt)"
done

# The broker in the container runs as uid 1883 (user mosquitto of eclipse-mosquitto) and
# must read the file; compose mounts it read-only, so ownership is set here.
if [ "$(id -u)" = 0 ]; then
    chown 1883:1883 mosquitto/passwd
    chmod 0600 mosquitto/passwd
else
    # Without root, readable by all: tolerable only because every password is random.
    chmod 0644 mosquitto/passwd
    echo "mosquitto/passwd is world-readable; as root: chown 1883:1883 and chmod 0600 it"
fi
