"""Camera networks: camera nodes, their shared inference scheduler, and coordination over
NATS JetStream."""
