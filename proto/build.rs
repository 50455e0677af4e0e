//! Compiles `ecommerce/*.proto` with protox (pure Rust, no `protoc`), writes the
//! encoded descriptor set for server reflection, and generates prost messages
//! plus tonic clients and servers. With the `book` feature it also compiles the
//! book's own minimal protos into a separate module, for compatibility tests.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=ecommerce");
    println!("cargo:rerun-if-changed=book");

    let contract = proto_files("ecommerce")?;
    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(&contract)?
        .file_descriptor_set();
    fs::write(out.join("ecommerce_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .out_dir(&out)
        .compile_fds(fds)?;

    if env::var_os("CARGO_FEATURE_BOOK").is_some() {
        let book_out = out.join("book");
        fs::create_dir_all(&book_out)?;
        let fds = protox::Compiler::new(["book"])?
            .include_imports(true)
            .open_files(
                proto_files("book")?
                    .iter()
                    .map(|p| p.strip_prefix("book").unwrap_or(p)),
            )?
            .file_descriptor_set();
        tonic_prost_build::configure()
            .build_server(true)
            .out_dir(&book_out)
            .compile_fds(fds)?;
    }
    Ok(())
}

/// Every `.proto` file directly in `dir`, sorted so builds are reproducible.
fn proto_files(dir: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    Ok(files)
}
