"""grpc.reflection.v1 stubs, generated from proto/grpc/reflection/v1/reflection.proto."""
