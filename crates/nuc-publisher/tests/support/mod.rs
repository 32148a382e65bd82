//! Harness shared by the OCSP tests: the real `nuc` binary makes CA homes, issues and revokes;
//! `openssl` makes the applicants' keys. (Each test binary uses what it needs of it.)

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn nuc_bin() -> PathBuf {
    let bin = std::env::var_os("NUC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/nuc"));
    assert!(
        bin.exists(),
        "{} is missing: run `make test` (it builds the release binary first)",
        bin.display()
    );
    bin
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Out {
    let o = Command::new(cmd)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SOFTHSM2_CONF")
        .output()
        .expect("run command");
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

pub fn must(cmd: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Out {
    let o = run(&cmd, args);
    assert!(
        o.ok,
        "{:?} {args:?} failed:\n{}{}",
        cmd.as_ref(),
        o.stdout,
        o.stderr
    );
    o
}

/// A CA home made by `nuc init` in a temporary directory.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn init() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("home");
        must(
            nuc_bin(),
            &[
                "init",
                "--home",
                h.to_str().unwrap(),
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ],
        );
        Home { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn p(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    pub fn ca(&self, name: &str) -> String {
        self.home()
            .join("ca")
            .join(name)
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// Issues an individual-auth certificate to `name.pem`; returns its serial (hex).
    pub fn issue(&self, name: &str) -> String {
        let (key, csr, out) = (
            self.p(&format!("{name}.key")),
            self.p(&format!("{name}.csr")),
            self.p(&format!("{name}.pem")),
        );
        must(
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=ignored",
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let o = must(
            nuc_bin(),
            &[
                "cert",
                "issue",
                "--home",
                self.home().to_str().unwrap(),
                "--profile",
                "individual-auth",
                "--csr",
                &csr,
                "--out",
                &out,
                "--iin",
                "860908363012",
                "--surname",
                "ҚҰНАНБАЙ",
                "--name",
                "АБАЙ",
            ],
        );
        o.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("serial="))
            .expect("serial= in the output")
            .to_owned()
    }

    pub fn revoke(&self, serial: &str) {
        must(
            nuc_bin(),
            &[
                "cert",
                "revoke",
                "--home",
                self.home().to_str().unwrap(),
                "--serial",
                serial,
                "--reason",
                "key-compromise",
            ],
        );
    }
}
