//! A private PostgreSQL cluster for tests and local runs, started from the
//! PostgreSQL server binaries already on the machine: no Docker, no shared
//! server, no superuser password anywhere but in the cluster's own folder.
//!
//! - [`Cluster::temporary`] makes a throwaway cluster in a temp dir (tests):
//!   fast settings (`fsync=off`), removed when dropped or when the process
//!   exits, however it exits.
//! - [`Cluster::persistent`] keeps its data in a folder across runs (the
//!   local shop): created on first use, started, stopped when dropped or when
//!   the process exits.
//! - [`Cluster::external`] uses a server you already run instead
//!   (`DATABASE_URL`, see [`Cluster::from_env_or_temporary`]).
//! - [`Cluster::ensure_database`] gives each service its own database and its
//!   own login role, which can connect to that database only.
//!
//! PostgreSQL refuses to run as root; as root, every server command runs as
//! the `postgres` user (`runuser -u postgres`), which owns the cluster folder.
//! Connections use TCP on 127.0.0.1 with SCRAM passwords, on a free port.
//!
//! A "watchdog" shell started next to the cluster holds the read end of a pipe
//! whose write end only this process has; when the process ends for any
//! reason the pipe closes and the watchdog stops the server, so no PostgreSQL
//! is left behind.

use std::{
    fs,
    io::Write as _,
    net::TcpListener,
    os::unix::{
        fs::{OpenOptionsExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use sqlx::{
    AssertSqlSafe, Connection as _, Executor as _, PgConnection, postgres::PgConnectOptions,
};

/// What went wrong starting or using the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found (looked in {searched}).\n\
         Install them with `sudo apt-get install postgresql-15` (Debian/Ubuntu; any version from 13 works),\n\
         or point PG_BIN at the folder that holds them, or set DATABASE_URL to use a server you already run."
    )]
    BinariesMissing { searched: String },
    #[error(
        "PostgreSQL refuses to run as root, and this machine has no `postgres` user to run it as.\n\
         Installing the server package (`sudo apt-get install postgresql-15`) creates that user; or run as a normal user."
    )]
    NoPostgresUser,
    #[error("{what} failed ({status}):\n{output}")]
    Command {
        what: String,
        status: String,
        output: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("database administration failed: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("an external server (DATABASE_URL) is not started or stopped by this tool")]
    External,
    #[error("invalid database name {0:?} (use lower-case letters, digits and _)")]
    BadName(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A running private PostgreSQL cluster.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    superuser_password: String,
    run_as_postgres: bool,
    temporary: bool,
    watchdog: Mutex<Option<Child>>,
    /// Set when the server is someone else's (`DATABASE_URL`): nothing is
    /// started or stopped, databases and roles are made there.
    external: Option<PgConnectOptions>,
    /// Set once the maintenance databases are closed to everyone.
    locked_down: tokio::sync::OnceCell<()>,
}

impl Cluster {
    /// A throwaway cluster in a new temp dir, tuned for speed over
    /// durability. Removed when dropped or when the process exits.
    pub fn temporary() -> Result<Self, Error> {
        let root = std::env::temp_dir().join(format!("shop-pg-{}", uuid::Uuid::new_v4().simple()));
        Self::open(root, true)
    }

    /// A cluster kept in `dir` across runs: created the first time, started
    /// now, stopped (data kept) when dropped or when the process exits.
    pub fn persistent(dir: &Path) -> Result<Self, Error> {
        let root = if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir()
                .map_err(io("current dir"))?
                .join(dir)
        };
        Self::open(root, false)
    }

    /// An existing server reached with a superuser (or CREATEROLE + CREATEDB)
    /// URL: databases and roles are created there; nothing is started.
    pub fn external(admin_url: &str) -> Result<Self, Error> {
        let options: PgConnectOptions = admin_url.parse()?;
        let mut cluster = Self::stub(Path::new(""), Path::new(""), false);
        cluster.port = options.get_port();
        cluster.external = Some(options);
        Ok(cluster)
    }

    /// The server named by `DATABASE_URL` when it is set, a temporary
    /// private cluster otherwise.
    pub fn from_env_or_temporary() -> Result<Self, Error> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Self::external(&url),
            _ => Self::temporary(),
        }
    }

    fn open(root: PathBuf, temporary: bool) -> Result<Self, Error> {
        let bin = find_binaries()?;
        let run_as_postgres = is_root();
        let owner = if run_as_postgres {
            Some(postgres_ids()?)
        } else {
            None
        };
        fs::create_dir_all(&root).map_err(io(format!("create {}", root.display())))?;
        set_private(&root, owner)?;

        let password_file = root.join("superuser.password");
        let superuser_password = match fs::read_to_string(&password_file) {
            Ok(p) if root.join("data/PG_VERSION").exists() => p.trim().to_owned(),
            _ => {
                let password = random_hex(24)?;
                write_private(&password_file, &password, owner)?;
                fs::create_dir_all(root.join("sock")).map_err(io("create socket dir"))?;
                set_private(&root.join("sock"), owner)?;
                let _ = fs::remove_dir_all(root.join("data"));
                let cluster = Self::stub(&root, &bin, run_as_postgres);
                cluster.run(
                    "initdb",
                    Command::new(bin.join("initdb"))
                        .arg("-D")
                        .arg(root.join("data"))
                        .args(["-U", "postgres", "-A", "scram-sha-256", "-E", "UTF8"])
                        .args(["--locale=C.UTF-8", "--no-sync"])
                        .arg(format!("--pwfile={}", password_file.display())),
                )?;
                password
            }
        };

        let mut cluster = Self::stub(&root, &bin, run_as_postgres);
        if root.join("data/postmaster.pid").exists() {
            // Left running by a run that could not clean up: it is ours, stop it.
            let _ = cluster.stop();
        }
        cluster.superuser_password = superuser_password;
        cluster.temporary = temporary;
        cluster.port = free_port()?;
        cluster.start()?;
        cluster.spawn_watchdog()?;
        Ok(cluster)
    }

    fn stub(root: &Path, bin: &Path, run_as_postgres: bool) -> Self {
        Self {
            root: root.to_owned(),
            bin: bin.to_owned(),
            port: 0,
            superuser_password: String::new(),
            run_as_postgres,
            temporary: true,
            watchdog: Mutex::new(None),
            external: None,
            locked_down: tokio::sync::OnceCell::new(),
        }
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the cluster keeps its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Starts the server (again, after [`stop`](Self::stop)) on the same port.
    pub fn start(&self) -> Result<(), Error> {
        if self.external.is_some() {
            return Err(Error::External);
        }
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            self.root.join("sock").display()
        );
        if self.temporary {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(self.root.join("data"))
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-o", &options, "start"])
            // Its own process group: Ctrl-C in a terminal must not stop the
            // server behind our back; we stop it ourselves, in order.
            .process_group(0);
        self.run("pg_ctl start", &mut cmd).map_err(|e| match e {
            Error::Command {
                what,
                status,
                output,
            } => Error::Command {
                what,
                status,
                output: format!("{output}\n{}", tail(&self.log_file(), 20)),
            },
            other => other,
        })
    }

    /// A streaming replica of this cluster (a hot standby), made afresh
    /// with `pg_basebackup` from the running server and started on a free
    /// port: every database and role of this cluster, read-only, replaying
    /// the primary's changes as they are written. It lives next to this
    /// cluster's folder (`<folder>-replica`, replaced by each call), and is
    /// kept or removed like it; the replica server is stopped when the
    /// returned value is dropped or this process exits.
    pub fn replica(&self) -> Result<Cluster, Error> {
        self.standby("replica")
    }

    /// Like [`replica`](Self::replica), in `<folder>-<name>`: several
    /// standbys of one cluster.
    pub fn standby(&self, name: &str) -> Result<Cluster, Error> {
        if self.external.is_some() {
            return Err(Error::External);
        }
        let mut root = self.root.clone().into_os_string();
        root.push(format!("-{name}"));
        let root = PathBuf::from(root);
        let owner = if self.run_as_postgres {
            Some(postgres_ids()?)
        } else {
            None
        };
        let mut replica = Self::stub(&root, &self.bin, self.run_as_postgres);
        if root.join("data/postmaster.pid").exists() {
            let _ = replica.stop();
        }
        if root.exists() {
            fs::remove_dir_all(&root).map_err(io(format!("remove {}", root.display())))?;
        }
        fs::create_dir_all(root.join("sock")).map_err(io("create the replica's folder"))?;
        set_private(&root, owner)?;
        set_private(&root.join("sock"), owner)?;
        write_private(
            &root.join("superuser.password"),
            &self.superuser_password,
            owner,
        )?;
        // -R: standby.signal and primary_conninfo (with the password, in the
        // replica's private folder) for streaming from this server.
        self.run(
            "pg_basebackup",
            Command::new(self.bin.join("pg_basebackup"))
                .arg("-D")
                .arg(root.join("data"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-X", "stream", "-R", "--checkpoint=fast", "--no-sync"])
                .env("PGPASSWORD", &self.superuser_password),
        )?;
        replica.superuser_password = self.superuser_password.clone();
        replica.temporary = self.temporary;
        replica.port = free_port()?;
        replica.start()?;
        replica.spawn_watchdog()?;
        Ok(replica)
    }

    /// `url` (one of [`ensure_database`](Self::ensure_database)'s) with
    /// this server's port instead of `primary`'s: the same database and
    /// role, on a replica.
    pub fn url_like(&self, url: &str, primary: &Cluster) -> String {
        url.replace(&format!(":{}/", primary.port), &format!(":{}/", self.port))
    }

    /// A superuser connection, for what tests do to the server itself
    /// (pausing a replica's replay, say).
    pub async fn admin(&self) -> Result<PgConnection, Error> {
        self.superuser().await
    }

    /// Stops the server quickly (`pg_ctl stop -m fast`); data stays.
    pub fn stop(&self) -> Result<(), Error> {
        if self.external.is_some() {
            return Err(Error::External);
        }
        self.run(
            "pg_ctl stop",
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.root.join("data"))
                .args(["-m", "fast", "-w", "stop"]),
        )
    }

    async fn superuser(&self) -> Result<PgConnection, Error> {
        let options = match &self.external {
            Some(options) => options.clone(),
            None => PgConnectOptions::new()
                .host("127.0.0.1")
                .port(self.port)
                .username("postgres")
                .password(&self.superuser_password)
                .database("postgres"),
        };
        Ok(PgConnection::connect_with(&options).await?)
    }

    /// Sets a server setting for the whole cluster (`ALTER SYSTEM`) and
    /// reloads, so every session that did not set it itself follows.
    /// Only settings a reload applies (such as `synchronous_commit`).
    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), Error> {
        let mut conn = self.superuser().await?;
        check_name(name)?;
        conn.execute(AssertSqlSafe(format!(
            "ALTER SYSTEM SET {name} = '{}'",
            value.replace('\'', "''")
        )))
        .await?;
        conn.execute("SELECT pg_reload_conf()").await?;
        Ok(())
    }

    /// The server's process id (the postmaster; its backends are its
    /// children), from `postmaster.pid`. `None` for an external server.
    pub fn server_pid(&self) -> Option<u32> {
        if self.external.is_some() {
            return None;
        }
        fs::read_to_string(self.root.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn host(&self) -> &str {
        self.external
            .as_ref()
            .map_or("127.0.0.1", |options| options.get_host())
    }

    /// Makes sure database `name` exists, owned by login role `name`, which
    /// can connect to it and to nothing else. The role's password is kept in
    /// the cluster folder, so the same URL works across runs. Returns its URL.
    pub async fn ensure_database(&self, name: &str) -> Result<String, Error> {
        check_name(name)?;
        // A new password every time: only the URL returned now is valid.
        let password = random_hex(24)?;
        let mut conn = self.superuser().await?;
        if self.external.is_none() {
            // Once per cluster: concurrent REVOKEs on one catalog row conflict.
            self.locked_down
                .get_or_try_init(|| lock_down_shared_databases(&mut conn))
                .await?;
        }
        let role_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        let verb = if role_exists { "ALTER" } else { "CREATE" };
        conn.execute(AssertSqlSafe(format!(
            "{verb} ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}'"
        )))
        .await?;
        let db_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !db_exists {
            conn.execute(AssertSqlSafe(format!(
                "CREATE DATABASE \"{name}\" OWNER \"{name}\""
            )))
            .await?;
        }
        conn.execute(AssertSqlSafe(format!(
            "REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC; \
                 GRANT CONNECT, TEMPORARY ON DATABASE \"{name}\" TO \"{name}\""
        )))
        .await?;
        conn.close().await?;
        Ok(format!(
            "postgres://{name}:{password}@{}:{}/{name}",
            self.host(),
            self.port
        ))
    }

    /// A brand-new database with a brand-new owner role, named
    /// `{prefix}_{random}`: one per test. Returns its URL.
    pub async fn fresh_database(&self, prefix: &str) -> Result<String, Error> {
        check_name(prefix)?;
        let name = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        self.ensure_database(&name).await
    }

    /// Drops a database made by [`fresh_database`](Self::fresh_database) and its role.
    pub async fn drop_database(&self, name: &str) -> Result<(), Error> {
        check_name(name)?;
        let mut conn = self.superuser().await?;
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .await?;
        conn.execute(AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{name}\"")))
            .await?;
        Ok(())
    }

    fn spawn_watchdog(&self) -> Result<(), Error> {
        let pg_ctl = shell_quote(&self.bin.join("pg_ctl"));
        let data = shell_quote(&self.root.join("data"));
        let mut script = format!(
            "cat >/dev/null; {} {pg_ctl} -D {data} -m fast -w stop",
            self.as_user_prefix()
        );
        if self.temporary {
            script.push_str(&format!("; rm -rf {}", shell_quote(&self.root)));
        }
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("start the cluster watchdog"))?;
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    fn as_user_prefix(&self) -> &'static str {
        if self.run_as_postgres {
            "runuser -u postgres --"
        } else {
            ""
        }
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), Error> {
        let mut cmd = if self.run_as_postgres {
            let mut wrapped = Command::new("runuser");
            wrapped
                .args(["-u", "postgres", "--"])
                .arg(cmd.get_program());
            wrapped.args(cmd.get_args());
            for (key, value) in cmd.get_envs() {
                if let Some(value) = value {
                    wrapped.env(key, value);
                }
            }
            wrapped.process_group(0);
            wrapped
        } else {
            std::mem::replace(cmd, Command::new("true"))
        };
        let output = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("run {what}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                what: what.to_owned(),
                status: output.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            })
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.external.is_some() {
            return;
        }
        let _ = self.stop();
        // Closing the watchdog's stdin makes it stop (again, harmlessly) and,
        // for temporary clusters, remove the folder.
        if let Some(mut child) = self
            .watchdog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Nobody but the owner may connect to the maintenance databases.
async fn lock_down_shared_databases(conn: &mut PgConnection) -> Result<(), Error> {
    conn.execute(
        "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC; \
         REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
    )
    .await?;
    Ok(())
}

fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: `$PG_BIN`, the
/// newest `/usr/lib/postgresql/*/bin` (Debian), or `pg_config --bindir`.
pub fn find_binaries() -> Result<PathBuf, Error> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_all(&dir) {
            return Ok(dir);
        }
        searched.push(format!("PG_BIN={}", dir.display()));
    }
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return Ok(dir);
    }
    searched.push("/usr/lib/postgresql/*/bin".into());
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_all(&dir) {
            return Ok(dir);
        }
        searched.push(format!("pg_config --bindir ({})", dir.display()));
    }
    Err(Error::BinariesMissing {
        searched: searched.join(", "),
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn postgres_ids() -> Result<(u32, u32), Error> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(Error::NoPostgresUser),
    }
}

/// Mode 0700, owned by the server's user.
fn set_private(path: &Path, owner: Option<(u32, u32)>) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("chmod {}", path.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io(format!("chown {}", path.display())))?;
    }
    Ok(())
}

fn write_private(path: &Path, content: &str, owner: Option<(u32, u32)>) -> Result<(), Error> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("write {}", path.display())))?;
    file.write_all(content.as_bytes())
        .map_err(io(format!("write {}", path.display())))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io(format!("chown {}", path.display())))?;
    }
    Ok(())
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Io {
        what: "random password".into(),
        source: std::io::Error::other(e),
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("find a free port"))?
        .port();
    Ok(port)
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_sql() {
        assert!(check_name("productinfo").is_ok());
        assert!(check_name("order_3f2a").is_ok());
        assert!(check_name("Robert'); DROP TABLE").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("9lives").is_err());
    }

    #[test]
    fn missing_binaries_error_names_the_package() {
        let message = Error::BinariesMissing {
            searched: "x".into(),
        }
        .to_string();
        assert!(message.contains("apt-get install postgresql-15"));
    }
}
