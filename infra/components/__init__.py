"""One ``ComponentResource`` per concern: network, cluster, stores, registry, service, deploy."""
