//! Harness of the end-to-end tests: runs the real `nuc` binary on a throw-away home with its
//! own SoftHSM2 token, makes applicant keys and requests with OpenSSL, and asks outside judges
//! (`openssl`, `pkcs11-tool`, pkilint's `lint_pkix_cert`) about what came out.

pub mod api;
pub mod cards;
pub mod console_page;
pub mod db;
pub mod desk;
pub mod webdriver;

pub use db::Db;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509Req, X509ReqBuilder};

/// The `nuc` binary under test: `NUC_BIN`, else the workspace's release build.
pub fn nuc_bin() -> PathBuf {
    let bin = std::env::var_os("NUC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/nuc"));
    assert!(
        bin.exists(),
        "{} is missing: run `make test` (it builds the release binary first)",
        bin.display()
    );
    bin
}

/// The IINs (and BINs) of the fixture registry that appear in `log` whole: the tests can only
/// name people the registry knows, so a log that names none of them names nobody. A judge of
/// its own, independent of the masking code it checks.
pub fn unmasked_fixture_iins(log: &str) -> Vec<String> {
    const FIXTURE: &str = include_str!("../crates/nuc-registry/fixtures/registry.json");
    let mut numbers: Vec<String> = FIXTURE
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 12)
        .map(str::to_owned)
        .collect();
    numbers.sort();
    numbers.dedup();
    assert!(numbers.len() >= 4, "the fixture lists people");
    numbers.retain(|n| log.contains(n.as_str()));
    numbers
}

/// A finished command, with its output as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The serial a successful `nuc … issue` printed (`issued serial=HEX …`); the test fails
    /// with the command's stderr when it was refused.
    pub fn issued_serial(&self) -> String {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        self.stdout
            .split("serial=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no serial in: {}", self.stdout))
            .to_owned()
    }

    /// stderr without the tracing lines (which carry a timestamp and a level).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

/// Which store the suite runs on: `NUC_TEST_STORE=postgres` puts every test home's records
/// in a database of a throwaway PostgreSQL cluster; SQLite (each home's file) otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub fn engine() -> Engine {
    match std::env::var("NUC_TEST_STORE").as_deref() {
        Ok("postgres") => Engine::Postgres,
        Ok("sqlite") | Err(_) => Engine::Sqlite,
        Ok(other) => panic!("NUC_TEST_STORE={other}: sqlite or postgres"),
    }
}

/// The cluster the test homes of this process share, while any of them lives: started by the
/// first, stopped (by pid, its files removed) when the last one is dropped.
pub fn shared_cluster() -> std::sync::Arc<pg_cluster::Cluster> {
    static SHARED: std::sync::Mutex<std::sync::Weak<pg_cluster::Cluster>> =
        std::sync::Mutex::new(std::sync::Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let c = std::sync::Arc::new(
        pg_cluster::Cluster::start().expect("a PostgreSQL cluster for the tests (make deps)"),
    );
    *shared = std::sync::Arc::downgrade(&c);
    c
}

/// A database of its own in `cluster`, as the URL a home names (no password in it).
pub fn new_database(cluster: &pg_cluster::Cluster) -> String {
    let mut b = [0u8; 8];
    openssl::rand::rand_bytes(&mut b).unwrap();
    let name = format!("nuc_{}", hex::encode(b));
    cluster.create_database(&name).unwrap();
    cluster.url(&name)
}

/// `nuc` as the tests run it: the binary under test, with no SOFTHSM2_CONF of ours (the
/// binary sets its home's). A home on PostgreSQL keeps its database password in a file of its
/// own (`[store] password_file`), so nothing here needs it.
pub fn nuc_command() -> Command {
    let mut cmd = Command::new(nuc_bin());
    cmd.env_remove("SOFTHSM2_CONF");
    cmd
}

/// Gives the home at `home` its database password as `[store] password_file` (0600), so that
/// every later command on it finds it there.
pub fn keep_store_password(home: &Path, password: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let file = home.join("store.password");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("{password}\n").as_bytes()).unwrap();
    let toml = home.join("nuc.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("[store]\n"), "{text}");
    std::fs::write(
        &toml,
        text.replacen(
            "[store]\n",
            "[store]\npassword_file = \"store.password\"\n",
            1,
        ),
    )
    .unwrap();
}

/// Runs `nuc` with arguments; logs quiet unless asked.
pub fn nuc(args: &[&str]) -> Run {
    nuc_command()
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("run nuc")
        .into()
}

/// A free loopback port, below the kernel's ephemeral range (32768+): a port taken from that
/// range can be handed to some test's outgoing connection before our server binds it.
///
/// A port is never handed out twice in one test process: two tests running side by side could
/// otherwise both find it free before either binds it, and one would then talk to the other's
/// service.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let mut b = [0u8; 2];
        openssl::rand::rand_bytes(&mut b).unwrap();
        let port = 20_000 + u16::from_le_bytes(b) % 12_000;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// A home with an initialised CA, removed when dropped.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    pub http: String,
    /// The admin listener (metrics).
    pub admin: String,
    /// On PostgreSQL: the cluster holding this home's database, and the database's URL.
    pub cluster: Option<std::sync::Arc<pg_cluster::Cluster>>,
    pub store_url: Option<String>,
}

impl TestHome {
    pub fn init() -> Self {
        Self::init_with(&[])
    }

    pub fn init_with(extra: &[&str]) -> Self {
        Self::init_on(engine(), extra)
    }

    /// A home on `engine`, whatever `NUC_TEST_STORE` says.
    pub fn init_on(engine: Engine, extra: &[&str]) -> Self {
        let cluster = match engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(shared_cluster()),
        };
        Self::init_in(cluster, extra)
    }

    /// A home whose records are in a new database of `cluster` (SQLite when `None`).
    pub fn init_in(cluster: Option<std::sync::Arc<pg_cluster::Cluster>>, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let http = format!("127.0.0.1:{}", free_port());
        let home = dir.path().join("home");
        let mut args = vec![
            "init",
            "--home",
            home.to_str().unwrap(),
            "--http-listen",
            &http,
        ];
        args.extend_from_slice(extra);
        // Never the default ports: a dev instance (`make run`) may be using them.
        let grpc = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        if !extra.contains(&"--admin-listen") {
            args.extend(["--admin-listen", admin.as_str()]);
        }
        if !extra.contains(&"--grpc-listen") {
            args.extend(["--grpc-listen", grpc.as_str()]);
        }
        let store_url = cluster.as_ref().map(|c| new_database(c));
        if let Some(url) = &store_url {
            args.extend(["--store-url", url.as_str()]);
        }
        let mut init = nuc_command();
        init.args(&args).env("RUST_LOG", "warn");
        if let Some(c) = &cluster {
            init.env("NUC_STORE_PASSWORD", c.password());
        }
        let r = Run::from(init.output().expect("run nuc"));
        assert_eq!(r.code, Some(0), "init failed: {}{}", r.stdout, r.stderr);
        if let Some(c) = &cluster {
            keep_store_password(&home, c.password());
        }
        TestHome {
            dir,
            http,
            admin,
            cluster,
            store_url,
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn home_str(&self) -> String {
        self.home().to_str().unwrap().to_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// OpenSC's `pkcs11-tool`, logged in to this home's SoftHSM2 token as its user (the dev
    /// PIN), with `args` after: an outside judge of what the token holds.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "nuc-ca",
            "--login",
            "--pin",
            "nuc-dev-user-pin",
        ];
        all.extend_from_slice(args);
        Command::new("pkcs11-tool")
            .args(&all)
            .env("SOFTHSM2_CONF", self.home().join("hsm/softhsm2.conf"))
            .output()
            .expect("pkcs11-tool (make deps)")
            .into()
    }

    pub fn root_pem(&self) -> PathBuf {
        self.home().join("ca/root.pem")
    }

    pub fn issuing_pem(&self) -> PathBuf {
        self.home().join("ca/issuing.pem")
    }

    /// `nuc cert issue --home … --profile P --csr CSR --out OUT` plus subject options.
    pub fn issue(&self, profile: &str, csr: &Path, out: &Path, subject: &[&str]) -> Run {
        let home = self.home_str();
        let mut args = vec![
            "cert",
            "issue",
            "--home",
            &home,
            "--profile",
            profile,
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(subject);
        nuc(&args)
    }

    /// The home's database, on whichever engine it is: the SQLite file, or the home's database
    /// in the test cluster.
    pub fn db(&self) -> Db {
        match (&self.cluster, &self.store_url) {
            (Some(cluster), Some(url)) => Db::postgres(url, cluster.password()),
            _ => Db::sqlite(&self.home().join("nuc.db")),
        }
    }

    pub fn engine(&self) -> Engine {
        if self.store_url.is_some() {
            Engine::Postgres
        } else {
            Engine::Sqlite
        }
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().count(sql)
    }

    /// (seq, action) of every audit record.
    pub fn audit_actions(&self) -> Vec<(i64, String)> {
        self.db()
            .rows("SELECT seq, action FROM audit_log ORDER BY seq", &[])
    }
}

/// Applicant keys.
pub enum KeySpec {
    Rsa(u32),
    Ec(Nid),
}

pub fn key(spec: &KeySpec) -> PKey<Private> {
    match spec {
        KeySpec::Rsa(bits) => PKey::from_rsa(Rsa::generate(*bits).unwrap()).unwrap(),
        KeySpec::Ec(nid) => {
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(*nid).unwrap()).unwrap())
                .unwrap()
        }
    }
}

/// A PKCS#10 request with a subject the CA must ignore.
pub fn csr_for(key: &PKey<Private>) -> X509Req {
    let mut b = X509ReqBuilder::new().unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "Applicant-chosen name the CA must ignore")
        .unwrap();
    b.set_subject_name(&name.build()).unwrap();
    b.set_pubkey(key).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

/// Writes a fresh key's CSR as PEM to `path`.
pub fn write_csr(path: &Path, spec: KeySpec) -> PKey<Private> {
    let k = key(&spec);
    std::fs::write(path, csr_for(&k).to_pem().unwrap()).unwrap();
    k
}

/// GET over plain HTTP/1.1: the status line and headers (lower case), and the body.
pub fn http_get(addr: &str, path: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (
        String::from_utf8_lossy(&out[..end]).to_lowercase(),
        out[end..].to_vec(),
    )
}

/// Runs an outside command and returns its output.
pub fn outside(cmd: &str, args: &[&str]) -> Run {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is not runnable ({e}): run `make deps`"))
        .into()
}

/// The Python of the workspace's `.venv` (made by `make deps`, with `cryptography` as
/// pkilint's dependency), else `python3` from PATH.
pub fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A test PKI made by the openssl command in `dir`: `CA.pem`/`CA.key`, a self-signed CA.
pub fn openssl_ca(dir: &Path, ca: &str) {
    let r = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={ca}")])
        .args([
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .output()
        .expect("openssl");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// `NAME.pem`/`NAME.key` in `dir`: a TLS server certificate for 127.0.0.1 and localhost, issued
/// by the CA `ca` of [`openssl_ca`].
pub fn openssl_server_cert(dir: &Path, name: &str, ca: &str) {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &format!("{name}.pem"),
        ],
    ] {
        let r = Command::new("openssl")
            .current_dir(dir)
            .args(&args)
            .output()
            .expect("openssl");
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
}

/// `openssl verify` of a leaf against the home's chain.
pub fn openssl_verify(home: &TestHome, leaf: &Path) -> Run {
    outside(
        "openssl",
        &[
            "verify",
            "-CAfile",
            home.root_pem().to_str().unwrap(),
            "-untrusted",
            home.issuing_pem().to_str().unwrap(),
            leaf.to_str().unwrap(),
        ],
    )
}

/// pkilint's RFC 5280 lint at WARNING and above: the list of findings (empty = clean).
pub fn pkilint_findings(cert: &Path) -> String {
    let r = outside(
        "lint_pkix_cert",
        &["lint", "-s", "WARNING", cert.to_str().unwrap()],
    );
    assert!(
        r.stderr.trim().is_empty(),
        "lint_pkix_cert failed to run: {}",
        r.stderr
    );
    r.stdout.trim().to_owned()
}

/// `openssl asn1parse` of a PEM certificate.
pub fn asn1parse(cert: &Path) -> String {
    let r = outside("openssl", &["asn1parse", "-in", cert.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.stdout
}

/// All file contents under `dir`, for "no private key in any file" checks.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

impl TestHome {
    /// Points the home at other databases: `[store] url` and `[store] read_url` (none: every
    /// read from `url`) rewritten in its `nuc.toml`; a running service sees it on restart.
    pub fn set_store_urls(&self, url: &str, read_url: Option<&str>) {
        let path = self.home().join("nuc.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        let mut in_store = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_store = line.trim() == "[store]";
                out.push_str(line);
                out.push('\n');
                if in_store {
                    out.push_str(&format!("url = \"{url}\"\n"));
                    if let Some(r) = read_url {
                        out.push_str(&format!("read_url = \"{r}\"\n"));
                    }
                }
                continue;
            }
            let key = line.split('=').next().unwrap_or_default().trim();
            if in_store && (key == "url" || key == "read_url") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        assert!(text.contains("[store]"), "{text}");
        std::fs::write(&path, out).unwrap();
    }
}
