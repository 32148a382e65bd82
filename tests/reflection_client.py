"""A gRPC reflection client as the tools people use speak it: Python's grpcio-reflection
(grpc.reflection.v1alpha), over mutual TLS.

    reflection_client.py ADDRESS CA_PEM CERT_PEM KEY_PEM

Prints one line per service the server lists (`service NAME`), then, for each service, the
methods of its descriptor as fetched through reflection (`method SERVICE/METHOD`). Exits
non-zero on any failure (an UNIMPLEMENTED reflection service among them).
"""

import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> int:
    address, ca, cert, key = sys.argv[1:5]
    with open(ca, "rb") as f:
        root = f.read()
    with open(cert, "rb") as f:
        chain = f.read()
    with open(key, "rb") as f:
        private = f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private, certificate_chain=chain
    )
    # The service's TLS certificate names localhost; the tests connect to 127.0.0.1.
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(address, creds, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        db = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(db.get_services())
        for name in services:
            print(f"service {name}")
        pool = DescriptorPool(db)
        for name in services:
            for method in pool.FindServiceByName(name).methods:
                print(f"method {name}/{method.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
