//! Embeds every file under `static/` (styles, scripts, product images) into
//! the binary: the container's root file system stays read-only and the
//! binary is the whole web shop.

use std::{env, fmt::Write as _, fs, path::Path};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=static");
    let root = Path::new(&env::var("CARGO_MANIFEST_DIR")?).join("static");
    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// Embedded static files: (path under /static/, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files {
        writeln!(code, "    ({name:?}, include_bytes!({path:?})),")?;
    }
    code.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR")?).join("static_files.rs"),
        code,
    )?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative.to_string_lossy().replace('\\', "/");
            files.push((name, path.display().to_string()));
        }
    }
    Ok(())
}
