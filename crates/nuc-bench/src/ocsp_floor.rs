//! The HTTP floor of the OCSP benchmark: nginx serving the very bytes of one of our cached
//! responses as a static file.
//!
//! A cached OCSP answer is, at best, one HTTP exchange of about 1.5 KB: whatever a responder
//! does beyond that (parsing the request, finding the status, picking the signed response)
//! shows as the distance to a server that does nothing but send the bytes. nginx is the
//! yardstick because it is what a CA would otherwise put in front of pre-signed responses
//! (RFC 5019 §6) and because it is about as cheap per exchange as HTTP/1.1 gets: so the
//! ratio ours/floor says how much of the cost of an answer is ours.
//!
//! It is set up to be fast, not to be like us: as many worker processes as CPUs, no access
//! log, keep-alive without a request limit, the file served from the page cache with
//! `sendfile` and an open-file cache. Whatever the request (POST `/ocsp` with a body, or GET
//! `/ocsp/<base64>`), the answer is the same file: a POST to a static file is answered 405 by
//! nginx, which `error_page 405 =200` turns into the file, after nginx has read the request
//! body (as we must). The binary is Debian's, taken out of the `nginx` package into `.tools/`
//! by `make bench` (installing the package would start a server on port 80); the bench finds
//! it through `NUC_BENCH_NGINX`, or `nginx` on the PATH.
//!
//! It listens on 127.0.0.1 only, writes nothing outside its temporary directory, and is killed
//! with its process group (master and workers) when dropped.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::f1::{Proc, free_port};
use crate::ocsp::ProcessGroup;

/// How long nginx may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// nginx serving one response's bytes on a loopback port.
pub(crate) struct Floor {
    pub(crate) group: ProcessGroup,
    pub(crate) addr: SocketAddr,
    pub(crate) version: String,
}

/// The nginx binary: `NUC_BENCH_NGINX` (set by `make bench`), else `nginx` on the PATH.
fn nginx_binary() -> PathBuf {
    std::env::var_os("NUC_BENCH_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

impl Floor {
    /// Starts nginx in `dir` (created) serving `response` to every request, with `workers`
    /// worker processes.
    pub(crate) fn start(dir: &Path, response: &[u8], workers: usize) -> Result<Floor> {
        let nginx = nginx_binary();
        let version = Command::new(&nginx)
            .arg("-v")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .with_context(|| {
                format!(
                    "cannot run {} (the OCSP benchmark's HTTP floor): `make bench` extracts \
                     Debian's nginx into .tools/; or set NUC_BENCH_NGINX",
                    nginx.display()
                )
            })?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("response.der"), response)?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let d = dir.display();
        let conf = format!(
            "worker_processes {workers};\n\
             daemon off;\n\
             master_process on;\n\
             pid {d}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               server_tokens off;\n\
               keepalive_requests 100000000;\n\
               keepalive_timeout 75s;\n\
               sendfile on;\n\
               tcp_nodelay on;\n\
               open_file_cache max=16 inactive=60s;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               default_type application/ocsp-response;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 root {d};\n\
                 location / {{\n\
                   try_files /response.der =404;\n\
                   error_page 405 =200 /response.der;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let log_path = dir.join("nginx.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .args(["-e", "stderr", "-c"])
            .arg(&conf_path)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", nginx.display()))?;
        let mut group = ProcessGroup::new(Proc::new(child, "nginx"), "nginx");
        group.proc.wait_listening(addr, START_TIMEOUT, &log_path)?;
        Ok(Floor {
            group,
            addr,
            version,
        })
    }
}
