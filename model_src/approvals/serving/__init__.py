"""The serving engine shared by the BentoML service's HTTP and gRPC front ends."""
