"""The harness: what tests, benchmarks, the drill and the demo use to stand up real parts on
this machine.

    ports.py      free ports; is something listening; wait until it is
    mosquitto.py  a private Mosquitto: listeners, persistence, queue limits, extra config
                  (ACL, passwords); restarts keep its ports
    bridges.py    edge Mosquittos bridged to a core one (QoS 1, persistent bridge sessions):
                  the topology of deploy/mosquitto/edge.conf, for the drill
    brokers.py    a private RabbitMQ node (rabbitmq_mqtt) and NATS server (JetStream, MQTT):
                  the ingest's broker matrix
    sinks.py      receivers for what Fleetwatch sends: an HTTP endpoint for Apprise json://
                  URLs and an SMTP server, in a thread or in a child process
    apiserver.py  the API served by uvicorn: in a thread, or in a child process
    fleet.py      a simulated fleet (devices.simulator's profiles) registered in a database,
                  its offline deadlines scaled with its time
    stats.py      one percentile, and the summary of a list of latencies

None of it is a part of the product's service; the demo (product code) uses the sinks and
the fleet loader, so the package is installed with Fleetwatch. Optional dependencies (the
SMTP sink's aiosmtpd, a dev dependency) are imported only when used.
"""
