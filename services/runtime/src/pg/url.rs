//! `DATABASE_URL` in the forms `psql` takes, read the way libpq reads them:
//!
//! - a URI: `postgresql://user:password@host:5432/shop?sslmode=require`,
//!   `postgres://` too, an IPv6 host in brackets;
//! - a socket folder as the host: `postgresql://user@/shop?host=/run/postgresql`,
//!   `postgresql://user@%2Frun%2Fpostgresql/shop`, or no host at all
//!   (`postgresql:///shop`: `PGHOST`, else the default socket folder);
//! - key=value pairs: `host=/run/postgresql port=5432 dbname=shop user=shop`
//!   (values may be 'single quoted').
//!
//! What libpq takes and this cannot (several hosts for fail-over) is refused
//! with an error that says what to write instead.

use std::{path::Path, str::FromStr as _};

use anyhow::{Context as _, bail};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Where libpq looks for a server's socket when no host is given (Debian's
/// folder first, then upstream's default).
const SOCKET_FOLDERS: [&str; 3] = ["/run/postgresql", "/var/run/postgresql", "/tmp"];

const FORMS: &str = "write postgresql://user:password@host:5432/dbname, \
     postgresql://user@/dbname?host=/socket/folder, or key=value pairs such as \
     \"host=/run/postgresql dbname=shop user=shop\"";

/// Connection options from any form the module documentation lists.
/// An error names what is wrong and the forms that work.
pub fn parse(url: &str) -> anyhow::Result<PgConnectOptions> {
    let url = url.trim();
    let parsed = if let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    {
        parse_uri(url, rest)
    } else if url.contains('=') && !url.contains("://") {
        parse_key_values(url)
    } else {
        Err(anyhow::anyhow!("not a PostgreSQL connection string"))
    };
    parsed.map_err(|e| anyhow::anyhow!("{e:#}; {FORMS}"))
}

fn parse_uri(url: &str, rest: &str) -> anyhow::Result<PgConnectOptions> {
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostspec) = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => (Some(userinfo), hostspec),
        None => (None, authority),
    };
    if hostspec.contains(',') {
        bail!(
            "several hosts ({hostspec}) are not supported: give one host, such as a \
             Service in front of the database's primary"
        );
    }
    // libpq reads an empty host as "the default": PGHOST or the socket folder.
    let (host, port) = split_port(hostspec);
    let rebuilt;
    let url = if host.is_empty() {
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        rebuilt = format!("postgresql://{userinfo}localhost{port}{tail}");
        rebuilt.as_str()
    } else {
        url
    };
    let mut options = PgConnectOptions::from_str(url)?;
    let query_sets_host = tail.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.starts_with("host=") || kv.starts_with("hostaddr="))
    });
    if host.is_empty() && !query_sets_host {
        options = default_host(options);
    }
    Ok(options)
}

/// `host` and `port` of `host:port`, `[v6]:port`, `host` or `:port`.
fn split_port(hostspec: &str) -> (&str, Option<&str>) {
    let port_at = if hostspec.starts_with('[') {
        hostspec
            .find(']')
            .and_then(|close| hostspec[close..].starts_with("]:").then_some(close + 1))
    } else {
        hostspec.rfind(':')
    };
    match port_at {
        Some(at) => (&hostspec[..at], Some(&hostspec[at + 1..])),
        None => (hostspec, None),
    }
}

/// No host given: `PGHOST` if set, else the first socket folder that has
/// this port's socket (or exists at all).
fn default_host(options: PgConnectOptions) -> PgConnectOptions {
    if let Ok(host) = std::env::var("PGHOST")
        && !host.is_empty()
    {
        return with_host(options, &host);
    }
    let socket = format!(".s.PGSQL.{}", options.get_port());
    let folder = SOCKET_FOLDERS
        .iter()
        .find(|f| Path::new(f).join(&socket).exists())
        .or_else(|| SOCKET_FOLDERS.iter().find(|f| Path::new(f).is_dir()))
        .unwrap_or(&SOCKET_FOLDERS[0]);
    options.socket(folder)
}

/// A host that starts with `/` is a socket folder, as in libpq.
fn with_host(options: PgConnectOptions, host: &str) -> PgConnectOptions {
    if host.starts_with('/') {
        options.socket(host)
    } else {
        options.host(host)
    }
}

fn parse_key_values(conninfo: &str) -> anyhow::Result<PgConnectOptions> {
    let mut options = PgConnectOptions::new();
    let mut host_given = false;
    for (key, value) in key_values(conninfo)? {
        options = match key.as_str() {
            "host" => {
                if value.contains(',') {
                    bail!("several hosts ({value}) are not supported: give one host");
                }
                host_given = !value.is_empty();
                if value.is_empty() {
                    options
                } else {
                    with_host(options, &value)
                }
            }
            "hostaddr" => {
                value
                    .parse::<std::net::IpAddr>()
                    .with_context(|| format!("hostaddr {value:?} is not an IP address"))?;
                host_given = true;
                options.host(&value)
            }
            "port" => options.port(
                value
                    .parse()
                    .with_context(|| format!("port {value:?} is not a port number"))?,
            ),
            "dbname" => options.database(&value),
            "user" => options.username(&value),
            "password" => options.password(&value),
            "sslmode" => options.ssl_mode(
                value
                    .parse::<PgSslMode>()
                    .with_context(|| format!("sslmode {value:?}"))?,
            ),
            "sslrootcert" => options.ssl_root_cert(value.as_str()),
            "sslcert" => options.ssl_client_cert(value.as_str()),
            "sslkey" => options.ssl_client_key(value.as_str()),
            "application_name" => options.application_name(&value),
            other => bail!("unknown connection parameter {other:?}"),
        };
    }
    if !host_given {
        options = default_host(options);
    }
    Ok(options)
}

/// The `key=value` pairs of a libpq connection string, unquoted.
fn key_values(conninfo: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            bail!("{key:?} has no value (key=value)");
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => bail!("the value of {key:?} has no closing quote"),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (socket folder or host, port, user, database)
    fn seen(options: &PgConnectOptions) -> (String, u16, String, Option<String>) {
        let host = match options.get_socket() {
            Some(folder) => folder.display().to_string(),
            None => options.get_host().to_owned(),
        };
        (
            host,
            options.get_port(),
            options.get_username().to_owned(),
            options.get_database().map(str::to_owned),
        )
    }

    fn ok(url: &str) -> (String, u16, String, Option<String>) {
        seen(&parse(url).unwrap_or_else(|e| panic!("{url}: {e:#}")))
    }

    #[test]
    fn every_form_psql_takes_for_host_socket_and_port() {
        let shop = |host: &str, port: u16| {
            (
                host.to_owned(),
                port,
                "shop".to_owned(),
                Some("db".to_owned()),
            )
        };
        assert_eq!(
            ok("postgresql://shop:pw@db.example:6432/db"),
            shop("db.example", 6432)
        );
        assert_eq!(
            ok("postgres://shop@db.example/db"),
            shop("db.example", 5432)
        );
        assert_eq!(ok("postgresql://shop@[::1]:6432/db"), shop("[::1]", 6432));
        assert_eq!(
            ok("postgresql://shop@/db?host=/run/postgresql"),
            shop("/run/postgresql", 5432)
        );
        assert_eq!(
            ok("postgresql://shop@:6432/db?host=/tmp/sock"),
            shop("/tmp/sock", 6432)
        );
        assert_eq!(
            ok("postgresql://shop@/db?host=/tmp/sock&port=6432"),
            shop("/tmp/sock", 6432)
        );
        assert_eq!(
            ok("postgresql://shop@%2Ftmp%2Fsock:6432/db"),
            shop("/tmp/sock", 6432)
        );
        assert_eq!(
            ok("postgresql://shop@db.example/db?host=/tmp/sock"),
            shop("/tmp/sock", 5432),
            "the host parameter wins, as in libpq"
        );
        assert_eq!(
            ok("host=/tmp/sock port=6432 dbname=db user=shop"),
            shop("/tmp/sock", 6432)
        );
        assert_eq!(
            ok(r"host = db.example  dbname='db' user=shop password='it\'s' "),
            shop("db.example", 5432)
        );
        assert_eq!(
            ok("hostaddr=127.0.0.1 dbname=db user=shop"),
            shop("127.0.0.1", 5432)
        );
    }

    #[test]
    fn no_host_means_a_socket_folder_as_in_libpq() {
        let (host, ..) = ok("postgresql://shop@/db");
        let (bare, ..) = ok("postgresql:///db");
        let (pairs, ..) = ok("dbname=db user=shop");
        if std::env::var_os("PGHOST").is_none() {
            assert!(SOCKET_FOLDERS.contains(&host.as_str()), "{host}");
        }
        assert_eq!(
            (bare.as_str(), pairs.as_str()),
            (host.as_str(), host.as_str())
        );
    }

    #[test]
    fn quoted_values_keep_their_spaces_and_escapes() {
        let pairs = key_values(r"password='a b\'c' application_name=x\ y").unwrap();
        assert_eq!(
            pairs,
            [
                ("password".to_owned(), "a b'c".to_owned()),
                ("application_name".to_owned(), "x y".to_owned())
            ]
        );
    }

    #[test]
    fn what_cannot_work_says_which_form_to_use() {
        for (url, says) in [
            ("postgresql://shop@a:5432,b:5432/db", "several hosts"),
            ("host=a,b dbname=db", "several hosts"),
            ("mysql://shop@db/db", "not a PostgreSQL connection string"),
            ("db.example:5432", "not a PostgreSQL connection string"),
            ("host=a dbnam=db", "unknown connection parameter \"dbnam\""),
            ("host=a port=x", "not a port number"),
            ("host='a dbname=db", "no closing quote"),
            (
                "postgresql://shop@db:99999/db",
                "postgresql://user:password@host:5432/dbname",
            ),
        ] {
            let error = format!("{:#}", parse(url).unwrap_err());
            assert!(error.contains(says), "{url}: {error}");
            assert!(
                error.contains("postgresql://"),
                "{url} names the forms: {error}"
            );
        }
    }
}
