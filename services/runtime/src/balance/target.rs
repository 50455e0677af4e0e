//! Where a peer's addresses come from (grpc-go's resolver): a DNS name (a
//! Kubernetes headless Service answers with one address per ready pod), a
//! fixed list, or a file read again at every resolution.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

/// Where a service's addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `dns:///host:port`: every address the name resolves to.
    Dns { host: String, port: u16 },
    /// `host:port,host:port` (or `static:///...`): a fixed list, names resolved.
    Static(Vec<String>),
    /// `file:///path`: `host:port` entries (one per line or comma-separated),
    /// read again at every resolution.
    File(PathBuf),
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("dns:///").or_else(|| s.strip_prefix("dns:")) {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: expected dns:///host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
            if host.is_empty() {
                return Err(format!("{s:?}: empty host"));
            }
            return Ok(Target::Dns {
                host: host.trim_start_matches('/').to_owned(),
                port,
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Target::File(PathBuf::from(path)));
        }
        let list = s.strip_prefix("static:///").unwrap_or(s);
        let entries: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        if entries.iter().any(|e| e.rsplit_once(':').is_none()) {
            return Err(format!(
                "{s:?}: expected dns:///host:port, file:///path or host:port[,host:port...]"
            ));
        }
        Ok(Target::Static(entries))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dns { host, port } => write!(f, "dns:///{host}:{port}"),
            Target::Static(list) => write!(f, "{}", list.join(",")),
            Target::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

impl Target {
    /// The addresses the target names right now, sorted and without duplicates.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let entries = match self {
            Target::Dns { host, port } => vec![format!("{host}:{port}")],
            Target::Static(list) => list.clone(),
            Target::File(path) => tokio::fs::read_to_string(path)
                .await?
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let mut addrs = Vec::new();
        for entry in entries {
            addrs.extend(tokio::net::lookup_host(entry.as_str()).await?);
        }
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }
}
