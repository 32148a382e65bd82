//! Harness for the API tests: a running `nuc serve` with its registry service, and gRPC
//! clients over mutual TLS holding certificates of each caller role, made by our own CA.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nuc_api::v1::admin_service_client::AdminServiceClient;
use nuc_api::v1::operator_service_client::OperatorServiceClient;
use nuc_api::v1::portal_service_client::PortalServiceClient;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{KeySpec, TestHome, csr_for, free_port, key, nuc, nuc_bin};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling_bin(name: &str) -> PathBuf {
    nuc_bin().with_file_name(name)
}

/// The registry service with the built-in fixture, on a free port.
pub fn start_registry() -> (Proc, String) {
    let mut child = Command::new(sibling_bin("nuc-registry"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("nuc-registry (built by `make test`)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("registry said {line:?}"))
        .to_owned();
    (Proc(child), format!("http://{addr}"))
}

/// A CA home with a running service and registry.
pub struct Service {
    pub home: TestHome,
    pub grpc: String,
    pub registry_url: String,
    _registry: Option<Proc>,
    pub server: Option<Proc>,
}

impl Service {
    pub fn start() -> Self {
        let (registry, registry_url) = start_registry();
        Self::start_with_registry(Some(registry), registry_url)
    }

    /// With a registry URL where nothing answers (the registry is down).
    pub fn start_without_registry() -> Self {
        let url = format!("http://127.0.0.1:{}", free_port());
        Self::start_with_registry(None, url)
    }

    fn start_with_registry(registry: Option<Proc>, registry_url: String) -> Self {
        let grpc = format!("127.0.0.1:{}", free_port());
        let home = TestHome::init_with(&["--grpc-listen", &grpc, "--registry-url", &registry_url]);
        let mut s = Service {
            home,
            grpc,
            registry_url,
            _registry: registry,
            server: None,
        };
        s.restart(&[]);
        s
    }

    /// (Re)starts `nuc serve`, with extra environment (e.g. a clock offset).
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.server.take();
        let mut cmd = Command::new(nuc_bin());
        cmd.args(["serve", "--home", &self.home.home_str()])
            .env(
                "RUST_LOG",
                std::env::var("NUC_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("SOFTHSM2_CONF")
            .stdout(Stdio::null())
            // The service's log goes to a file in the home, to read when a test fails.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.home.path("serve.log"))
                    .unwrap(),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        self.server = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&self.grpc).is_err() {
            assert!(
                Instant::now() < deadline,
                "nuc serve did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// A system certificate of `role`, issued by the CLI, with its key (PEM, PEM).
    pub fn system_identity(&self, role: Option<&str>) -> (String, String) {
        let k = key(&KeySpec::Ec(Nid::X9_62_PRIME256V1));
        let name = role.unwrap_or("norole");
        let csr = self.home.path(&format!("{name}-{}.csr", rand_suffix()));
        std::fs::write(&csr, csr_for(&k).to_pem().unwrap()).unwrap();
        let out = csr.with_extension("pem");
        let mut args = vec!["--cn", name];
        if let Some(r) = role {
            args.extend(["--role", r]);
        }
        let r = self.home.issue("system", &csr, &out, &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        (
            std::fs::read_to_string(out).unwrap(),
            String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
    }

    pub async fn channel(
        &self,
        identity: Option<(String, String)>,
    ) -> Result<Channel, tonic::transport::Error> {
        let root = std::fs::read_to_string(self.home.root_pem()).unwrap();
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(root))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{}", self.grpc))
            .unwrap()
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
    }

    pub async fn portal(&self) -> PortalServiceClient<Channel> {
        PortalServiceClient::new(
            self.channel(Some(self.system_identity(Some("portal"))))
                .await
                .unwrap(),
        )
    }

    pub async fn workstation(&self) -> OperatorServiceClient<Channel> {
        OperatorServiceClient::new(
            self.channel(Some(self.system_identity(Some("workstation"))))
                .await
                .unwrap(),
        )
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(
            self.channel(Some(self.system_identity(Some("admin"))))
                .await
                .unwrap(),
        )
    }

    /// Runs `nuc` against this home (the service may be running: SQLite WAL allows it).
    pub fn nuc(&self, args: &[&str]) -> crate::Run {
        nuc(args)
    }
}

pub fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A DER PKCS#10 request for a fresh key, and the key.
pub fn csr_der(spec: KeySpec) -> (Vec<u8>, PKey<Private>) {
    let k = key(&spec);
    (csr_for(&k).to_der().unwrap(), k)
}

/// The reason code of a refused call.
pub fn reason(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(nuc_api::REASON_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned()
}
