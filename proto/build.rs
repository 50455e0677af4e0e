//! Compiles `ecommerce/*.proto` with protox (pure Rust, no `protoc`), writes the
//! encoded descriptor sets for server reflection (the whole contract, and one
//! per service file with only that file's services), and generates prost messages
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
    // One set per file that defines services, for that server's reflection:
    // the file and what it imports, with the imports' services left out, so
    // `grpcurl list` shows only what the server implements.
    for file in &fds.file {
        if file.service.is_empty() {
            continue;
        }
        let name = file.name();
        let mut wanted = vec![name.to_owned()];
        let mut i = 0;
        while i < wanted.len() {
            let deps = fds
                .file
                .iter()
                .find(|f| f.name() == wanted[i])
                .map(|f| f.dependency.clone())
                .unwrap_or_default();
            for dep in deps {
                if !wanted.contains(&dep) {
                    wanted.push(dep);
                }
            }
            i += 1;
        }
        let mut own = fds.clone();
        own.file.retain(|f| wanted.iter().any(|w| w == f.name()));
        for f in &mut own.file {
            if f.name() != name {
                f.service.clear();
            }
        }
        let stem = PathBuf::from(name);
        let stem = stem.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
        fs::write(
            out.join(format!("{stem}_descriptor.bin")),
            own.encode_to_vec(),
        )?;
    }
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
