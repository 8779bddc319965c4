//! Generates the cluster gRPC code (`proto/cluster.proto`) with protox, a pure-Rust protobuf
//! compiler, so building needs no `protoc`. The generated code is only included with the
//! `server` feature (see `src/cluster/grpc/proto.rs`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTO: &str = "proto/cluster.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
