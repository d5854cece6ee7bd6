#!/bin/sh
# Make the secrets compose.yaml needs, next to this script. Safe to run again: existing
# secrets are kept, and each device named is given a new password.
#
#   ./make-passwords.sh [device-id ...]
#
#   .env                  POSTGRES_PASSWORD, one FLEETWATCH_MQTT_PASSWORD_* per Fleetwatch
#                         login (below) and an unguessable FLEETWATCH_INGEST_SHARED_GROUP;
#                         each made once, then reused
#   mosquitto/passwd      the broker's password file: each Fleetwatch login, plus each device
#   device-passwords.txt  "device-id password" lines to put on the devices
#
# Each Fleetwatch process logs in as itself (mosquitto/acl says what each may do, and
# use_username_as_clientid in mosquitto.conf ties its session to its login).
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

# Each Fleetwatch login (as in mosquitto/acl) and the .env variable holding its password.
SERVICE_LOGINS="
fleetwatch-ingest-1=FLEETWATCH_MQTT_PASSWORD_INGEST_1
fleetwatch-ingest-2=FLEETWATCH_MQTT_PASSWORD_INGEST_2
fleetwatch-campaigns=FLEETWATCH_MQTT_PASSWORD_CAMPAIGNS
fleetwatch-api=FLEETWATCH_MQTT_PASSWORD_API
fleetwatch-healthcheck=FLEETWATCH_MQTT_PASSWORD_HEALTHCHECK
fleetwatch-bridge-edge-1=FLEETWATCH_MQTT_PASSWORD_BRIDGE_EDGE_1
fleetwatch-bridge-edge-2=FLEETWATCH_MQTT_PASSWORD_BRIDGE_EDGE_2
"

mosquitto_passwd_run() { # mosquitto_passwd on mosquitto/passwd: -b user password, or -D user
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        mosquitto_passwd "$1" mosquitto/passwd "$2" ${3+"$3"}
    else
        docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/mosquitto:/work" \
            eclipse-mosquitto:2 mosquitto_passwd "$1" /work/passwd "$2" ${3+"$3"}
    fi
}

for device in "$@"; do
    # A device id is one MQTT topic level and a Mosquitto username: no / + # : or spaces.
    # Names starting with "fleetwatch" are the service's own logins.
    case "$device" in
        fleetwatch* | "" | *[!A-Za-z0-9._-]*)
            echo "refusing device id '$device': use letters, digits, '.', '_' or '-'," \
                "not starting with 'fleetwatch'" >&2
            exit 2
            ;;
    esac
done

add_secret() { # add_secret NAME VALUE: into .env unless it holds NAME already
    if ! grep -q "^$1=" .env 2>/dev/null; then
        echo "$1=$2" >>.env
        echo "wrote $1 to .env"
    fi
}
add_secret POSTGRES_PASSWORD "$(random_hex)"
add_secret FLEETWATCH_INGEST_SHARED_GROUP "fleetwatch-ingest-$(random_hex | cut -c1-16)"

[ -f mosquitto/passwd ] || : >mosquitto/passwd
for pair in $SERVICE_LOGINS; do
    login=${pair%%=*}
    variable=${pair#*=}
    add_secret "$variable" "$(random_hex)"
    mosquitto_passwd_run -b "$login" "$(sed -n "s/^$variable=//p" .env)"
done
# Each edge broker's bridge to the core (compose profile "edges"): its block, with its
# password, from mosquitto/bridge.conf.example into mosquitto/bridge-<edge>/bridge.conf.
for pair in $SERVICE_LOGINS; do
    login=${pair%%=*}
    variable=${pair#*=}
    case "$login" in fleetwatch-bridge-*) ;; *) continue ;; esac
    edge=${login#fleetwatch-bridge-}
    mkdir -p "mosquitto/bridge-$edge"
    sed -e "s/EDGE/$edge/g" -e "s/PASSWORD/$(sed -n "s/^$variable=//p" .env)/" \
        mosquitto/bridge.conf.example >"mosquitto/bridge-$edge/bridge.conf"
    # Read by the edge container's uid 1883, as mosquitto/passwd below.
    if [ "$(id -u)" = 0 ]; then
        chown -R 1883:1883 "mosquitto/bridge-$edge"
    else
        chmod 0755 "mosquitto/bridge-$edge"
        chmod 0644 "mosquitto/bridge-$edge/bridge.conf"
    fi
done
# The one login every Fleetwatch process shared before each had its own: gone.
if grep -q '^fleetwatch:' mosquitto/passwd; then
    mosquitto_passwd_run -D fleetwatch
    echo "removed the shared login 'fleetwatch' from mosquitto/passwd"
fi
for device in "$@"; do
    secret=$(random_hex)
    mosquitto_passwd_run -b "$device" "$secret"
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
