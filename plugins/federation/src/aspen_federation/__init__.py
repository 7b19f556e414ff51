"""aspen-federation: independent Aspen clusters that find each other through the Mainline
DHT (BEP-44 mutable items), each known by one long-lived Ed25519 cluster key."""
