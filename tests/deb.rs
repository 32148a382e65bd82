//! End-to-end test of the Debian package (packaging/debian/, built by `make deb` and by `make
//! test` before the tests): its file list, lintian, `systemd-analyze verify` and `security` on
//! its units, then the package installed for real with `dpkg -i`: the system user and the
//! modes it made, a home made with `nuc init` and checked with `nuc check` as that user, the
//! service and the registry stand-in started with the ExecStart lines of the installed units
//! (systemd does not run here), the scheduler's `nuc publish crls` as its timer's service runs
//! it (the CRL it reports fetched and judged by `openssl crl`), a refusal and an unreachable
//! service, and `dpkg --purge` twice: once keeping a home (and the user), once with nothing
//! left — the machine as it was.
//!
//! It changes the machine (a package, a system user, /var/lib/nuc, /etc/nuc): it runs as root
//! only (CI runs as root on a throwaway machine; anyone else gets a skip message), and refuses
//! to start on a machine that has the package, the user or /var/lib/nuc already.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nuc_e2e::*;

const UNITS: &str = "lib/systemd/system";
const HOME: &str = "/var/lib/nuc";
/// The HTTP listener of a home made by `nuc init` with its defaults.
const HTTP: &str = "127.0.0.1:8470";
/// The loopback ports of such a home (HTTP, gRPC, the registry, the admin listener), which
/// the units name.
const PORTS: [u16; 4] = [8470, 8471, 8472, 8473];

/// The package `make deb` built: the one `nuc_*.deb` in TARGET/debian.
fn package() -> PathBuf {
    let dir = nuc_bin()
        .parent()
        .and_then(Path::parent)
        .expect("NUC_BIN is TARGET/release/nuc")
        .join("debian");
    let debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make deb` first", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("nuc_") && n.ends_with(".deb"))
        })
        .collect();
    assert_eq!(
        debs.len(),
        1,
        "one nuc_*.deb expected in {}: {debs:?}",
        dir.display()
    );
    debs.into_iter().next().unwrap()
}

fn ok(run: Run, what: &str) -> Run {
    assert_eq!(
        run.code,
        Some(0),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

/// `runuser -u USER -- ARGS…` from `/`, with the environment of a unit (no SoftHSM2 setting
/// of ours, quiet logs).
fn as_user(user: &str, args: &[&str]) -> Run {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .args(args)
        .current_dir("/")
        .env_remove("SOFTHSM2_CONF")
        .env_remove("NUC_REEXECED")
        .env("RUST_LOG", "warn")
        .output()
        .expect("runuser")
        .into()
}

/// The values of `key=` in a unit file's text, in order.
fn unit_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn unit_value(text: &str, key: &str) -> String {
    let values = unit_values(text, key);
    assert_eq!(values.len(), 1, "one {key}= expected in:\n{text}");
    values.into_iter().next().unwrap()
}

/// A command line as systemd splits ExecStart= (words, "double quotes" kept together); the
/// units here use no other syntax, and anything else is refused so it is not misread.
fn exec_words(line: &str) -> Vec<String> {
    assert!(
        !line.contains(['\\', '\'', '$', '%']) && !line.starts_with(['-', '@', ':', '+', '!']),
        "ExecStart uses syntax this test does not read: {line}"
    );
    let mut words = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            words.push(quoted[..end].to_owned());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    words
}

/// The installed unit `name`'s text.
fn installed_unit(name: &str) -> String {
    std::fs::read_to_string(Path::new("/").join(UNITS).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// VAR=value lines of a systemd EnvironmentFile (comments and blank lines skipped).
fn environment_file(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Starts a unit's ExecStart as its user (setpriv execs: the pid is the service's, as under
/// systemd, and SIGTERM reaches it), in its WorkingDirectory, with its EnvironmentFile.
fn start_unit(unit: &str, user: &str, group: &str) -> Child {
    let text = installed_unit(unit);
    let argv = exec_words(&unit_value(&text, "ExecStart"));
    let mut cmd = Command::new("setpriv");
    cmd.args([&format!("--reuid={user}"), &format!("--regid={group}")])
        .arg(if user == "nobody" {
            "--clear-groups"
        } else {
            "--init-groups"
        })
        .arg("--")
        .args(&argv)
        .current_dir(
            unit_values(&text, "WorkingDirectory")
                .pop()
                .unwrap_or("/".into()),
        )
        .env_remove("SOFTHSM2_CONF")
        .env_remove("NUC_REEXECED")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for file in unit_values(&text, "EnvironmentFile") {
        let path = file.trim_start_matches('-');
        if Path::new(path).exists() {
            cmd.envs(environment_file(path));
        }
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("{unit}: starting {argv:?}: {e}"))
}

/// GET over HTTP/1.0 (no chunking): status and body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let status = String::from_utf8_lossy(&raw[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, raw[head_end + 4..].to_vec()))
}

/// Waits until `probe` holds, failing with the child's output if it exits first.
fn wait_for(what: &str, child: &mut Child, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !probe() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what}: exited with {status} before it was ready:\n{err}");
        }
        assert!(Instant::now() < deadline, "{what}: not ready in 90 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, then the exit status (killed after 30 s).
fn stop(child: &mut Child) -> std::process::ExitStatus {
    ok(
        outside("kill", &["-TERM", &child.id().to_string()]),
        "kill -TERM",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts the machine back however the test ends: the processes it started stopped, the home
/// it made removed, the package purged, the user and group gone.
struct Machine {
    children: Vec<Child>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let _ = std::fs::remove_dir_all(HOME);
            for f in ["scheduler.pem", "scheduler.key"] {
                let _ = std::fs::remove_file(Path::new("/etc/nuc").join(f));
            }
            let _ = outside("dpkg", &["--purge", "nuc"]);
            let _ = outside("deluser", &["--system", "--quiet", "nuc"]);
            let _ = outside("delgroup", &["--system", "--quiet", "nuc"]);
        }
    }
}

fn stat(path: &str) -> String {
    ok(outside("stat", &["-c", "%U:%G %a", path]), "stat")
        .stdout
        .trim()
        .to_owned()
}

/// What `nuc publish crls` printed: (kind, crl_number, base_crl_number, url, sha256) per line.
fn crl_lines(stdout: &str) -> Vec<(String, i64, i64, String, String)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("full ") || l.starts_with("delta "))
        .map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {k}= in {l}"))
                    .to_owned()
            };
            let base = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("base_crl_number="))
                .map_or(0, |b| b.parse().unwrap());
            (
                l.split_whitespace().next().unwrap().to_owned(),
                field("crl_number").parse().unwrap(),
                base,
                field("url"),
                field("sha256"),
            )
        })
        .collect()
}

/// A key and a `system` certificate of `role` issued on the installed home, in `dir`
/// (owned by nuc, which issues as the home's owner): (cert, key).
fn system_certificate(dir: &Path, role: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{role}.key"));
    let csr = dir.join(format!("{role}.csr"));
    let cert = dir.join(format!("{role}.pem"));
    let (k, c, p) = (
        key.to_str().unwrap(),
        csr.to_str().unwrap(),
        cert.to_str().unwrap(),
    );
    ok(
        outside(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                k,
            ],
        ),
        "openssl genpkey",
    );
    let subj = format!("/CN=nuc-{role}");
    ok(
        outside(
            "openssl",
            &["req", "-new", "-key", k, "-subj", &subj, "-out", c],
        ),
        "openssl req",
    );
    ok(
        outside("chown", &["-R", "nuc", dir.to_str().unwrap()]),
        "chown",
    );
    let cn = format!("nuc-{role}");
    ok(
        as_user(
            "nuc",
            &[
                "/usr/bin/nuc",
                "cert",
                "issue",
                "--home",
                HOME,
                "--profile",
                "system",
                "--role",
                role,
                "--cn",
                &cn,
                "--csr",
                c,
                "--out",
                p,
            ],
        ),
        "nuc cert issue (system)",
    );
    (cert, key)
}

#[test]
fn the_package_installs_serves_publishes_and_purges_clean() {
    let uid = outside("id", &["-u"]);
    if uid.stdout.trim() != "0" {
        eprintln!(
            "SKIPPED: tests/deb.rs installs a Debian package and a system user: run it as root \
             (CI does), on a machine you can spare"
        );
        return;
    }
    let deb = package();
    let deb_s = deb.to_str().unwrap();
    assert!(
        outside("dpkg-query", &["-W", "-f", "${Status}", "nuc"])
            .stdout
            .trim()
            != "install ok installed",
        "the package nuc is installed on this machine already: the test does not touch it"
    );
    assert!(
        outside("getent", &["passwd", "nuc"]).code != Some(0) && !Path::new(HOME).exists(),
        "this machine has a user nuc or {HOME} already: the test does not touch them"
    );
    for port in PORTS {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the installed units use it (stop `make run`?)"
        );
    }

    // The file list: the binaries, the units, /etc/nuc, the documentation; root-owned.
    let list = ok(outside("dpkg-deb", &["-c", deb_s]), "dpkg-deb -c").stdout;
    eprintln!("{list}");
    let entry = |path: &str| {
        list.lines()
            .find(|l| l.split_whitespace().nth(5) == Some(path))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{list}"))
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    for bin in ["./usr/bin/nuc", "./usr/bin/nuc-registry"] {
        assert_eq!(entry(bin), "-rwxr-xr-x root/root", "{bin}");
    }
    for unit in [
        "nuc.service",
        "nuc-registry.service",
        "nuc-publish-crls.service",
        "nuc-publish-crls.timer",
    ] {
        assert_eq!(entry(&format!("./{UNITS}/{unit}")), "-rw-r--r-- root/root");
    }
    assert_eq!(entry("./etc/nuc/nuc.env"), "-rw-r----- root/root");
    assert_eq!(entry("./etc/nuc/README"), "-rw-r--r-- root/root");
    for doc in ["copyright", "changelog.Debian.gz", "README.Debian"] {
        entry(&format!("./usr/share/doc/nuc/{doc}"));
    }
    entry("./usr/share/man/man1/nuc.1.gz");
    assert!(
        !list.contains("nuc-station") && !list.contains("./var/"),
        "no workstation agent, no /var (postinst makes {HOME}):\n{list}"
    );
    let conffiles = ok(
        outside("dpkg-deb", &["-I", deb_s, "conffiles"]),
        "dpkg-deb -I conffiles",
    );
    assert_eq!(conffiles.stdout, "/etc/nuc/README\n/etc/nuc/nuc.env\n");
    let info = ok(outside("dpkg-deb", &["-I", deb_s]), "dpkg-deb -I").stdout;
    assert!(info.contains(" Package: nuc\n"), "{info}");
    assert!(
        info.lines().any(|l| l.starts_with(" Depends: ")
            && l.contains("libc6")
            && l.contains("libssl3")
            && l.contains("adduser")),
        "{info}"
    );

    // lintian: no error, no warning left unexplained (packaging/debian/lintian-overrides).
    let lint = outside("lintian", &["--fail-on", "error,warning", "--info", deb_s]);
    eprintln!("lintian:\n{}{}", lint.stdout, lint.stderr);
    assert_eq!(
        lint.code,
        Some(0),
        "lintian:\n{}{}",
        lint.stdout,
        lint.stderr
    );
    assert!(
        !lint
            .stdout
            .lines()
            .any(|l| l.starts_with("E: ") || l.starts_with("W: ")),
        "{}",
        lint.stdout
    );

    // The units, from the package's own tree with its binaries: systemd-analyze verify, and the
    // exposure score of the sandbox.
    let staged = tempfile::tempdir().unwrap();
    let root = staged.path().to_str().unwrap();
    ok(outside("dpkg-deb", &["-x", deb_s, root]), "dpkg-deb -x");
    let unit_paths: Vec<String> = [
        "nuc.service",
        "nuc-registry.service",
        "nuc-publish-crls.service",
        "nuc-publish-crls.timer",
    ]
    .iter()
    .map(|u| format!("{root}/{UNITS}/{u}"))
    .collect();
    // Under --root, systemd-analyze finds the units and binaries the units name in the tree,
    // the package's binaries as installed; the system's own units (sysinit.target…) the
    // package depends on are copied beside them. The man pages of Documentation= are looked
    // up on the host, where they are not before installing: --man=no.
    ok(
        outside(
            "cp",
            &["-an", "/lib/systemd/system/.", &format!("{root}/{UNITS}/")],
        ),
        "copying the system's units",
    );
    let mut verify = vec![
        format!("--root={root}"),
        "--man=no".to_owned(),
        "verify".to_owned(),
    ];
    verify.extend(unit_paths.iter().cloned());
    let verify: Vec<&str> = verify.iter().map(String::as_str).collect();
    let v = outside("systemd-analyze", &verify);
    assert_eq!(
        v.code,
        Some(0),
        "systemd-analyze verify:\n{}{}",
        v.stdout,
        v.stderr
    );
    assert!(
        v.stderr.trim().is_empty(),
        "systemd-analyze verify said:\n{}",
        v.stderr
    );
    for unit in &unit_paths[..3] {
        // --threshold: the exposure (0 best, 100 worst; printed /10) above which it fails: the
        // units score 1.5-1.6 (15-16) today.
        let s = outside(
            "systemd-analyze",
            &[
                "security",
                "--offline=true",
                &format!("--root={root}"),
                "--threshold=20",
                unit,
            ],
        );
        let score = s.stdout.lines().last().unwrap_or_default().to_owned();
        eprintln!("systemd-analyze security {unit}: {score}");
        assert_eq!(s.code, Some(0), "{}{}", s.stdout, s.stderr);
    }

    // Installed.
    let mut machine = Machine {
        children: Vec::new(),
    };
    ok(outside("dpkg", &["-i", deb_s]), "dpkg -i");
    let passwd = ok(outside("getent", &["passwd", "nuc"]), "getent passwd nuc").stdout;
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], HOME, "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "a system user: {passwd}"
    );
    assert_eq!(stat(HOME), "nuc:nuc 700");
    assert_eq!(stat("/etc/nuc/nuc.env"), "root:nuc 640");
    assert!(Path::new("/usr/bin/nuc").exists());

    // A home, made and checked as the user nuc; the registry stand-in as its unit runs it.
    let init = ok(
        as_user("nuc", &["/usr/bin/nuc", "init", "--home", HOME]),
        "nuc init",
    );
    eprintln!("{}", init.stdout);
    assert_eq!(stat(HOME), "nuc:nuc 700");
    assert_eq!(stat(&format!("{HOME}/nuc.toml")), "nuc:nuc 600");
    let registry = start_unit("nuc-registry.service", "nobody", "nogroup");
    machine.children.push(registry);
    let reg = machine.children.last_mut().unwrap();
    wait_for("nuc-registry", reg, || {
        std::net::TcpStream::connect("127.0.0.1:8472").is_ok()
    });
    let check = ok(
        as_user("nuc", &["/usr/bin/nuc", "check", "--home", HOME]),
        "nuc check",
    );
    eprintln!("{}", check.stdout);
    assert!(!check.stdout.contains("FAIL:"), "{}", check.stdout);
    assert_eq!(unit_value(&installed_unit("nuc.service"), "User"), "nuc");

    // The service, as nuc.service starts it.
    machine
        .children
        .push(start_unit("nuc.service", "nuc", "nuc"));
    let serve = machine.children.last_mut().unwrap();
    wait_for("nuc serve", serve, || {
        matches!(http_get(HTTP, "/readyz"), Ok((200, _)))
    });

    // The scheduler's certificate where the publication unit reads it (see /etc/nuc/README).
    let scratch = tempfile::tempdir().unwrap();
    let (cert, key) = system_certificate(scratch.path(), "scheduler");
    ok(
        outside(
            "install",
            &[
                "-o",
                "root",
                "-g",
                "nuc",
                "-m",
                "0640",
                cert.to_str().unwrap(),
                key.to_str().unwrap(),
                "/etc/nuc/",
            ],
        ),
        "install scheduler.pem/key",
    );

    // The timer's service: its ExecStart as its user, twice; each CRL fetched from the URL it
    // names and judged by openssl (number, signature by the issuing CA).
    let publish_unit = installed_unit("nuc-publish-crls.service");
    assert_eq!(unit_value(&publish_unit, "User"), "nuc");
    assert_eq!(
        unit_value(&installed_unit("nuc-publish-crls.timer"), "Unit"),
        "nuc-publish-crls.service"
    );
    let argv = exec_words(&unit_value(&publish_unit, "ExecStart"));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut last_full = 0;
    for round in 0..2 {
        let p = ok(
            as_user("nuc", &argv),
            "nuc publish crls (the timer's service)",
        );
        eprintln!("{}", p.stdout);
        assert_eq!(p.stdout.lines().next(), Some("published"), "{}", p.stdout);
        let crls = crl_lines(&p.stdout);
        assert_eq!(crls.len(), 2, "{}", p.stdout);
        let (full, delta) = (&crls[0], &crls[1]);
        assert_eq!((full.0.as_str(), delta.0.as_str()), ("full", "delta"));
        assert!(
            full.1 > last_full,
            "round {round}: a new number: {}",
            p.stdout
        );
        // The service's rule (tests/publication.rs): the delta follows the new complete CRL
        // and is over the complete CRL before it, which relying parties hold.
        assert_eq!(delta.1, full.1 + 1, "{}", p.stdout);
        if round == 0 {
            assert!(delta.2 >= 1 && delta.2 < full.1, "{}", p.stdout);
        } else {
            assert_eq!(delta.2, last_full, "{}", p.stdout);
        }
        last_full = full.1;
        for (kind, number, _, url, sha256) in [full, delta] {
            let path = url
                .strip_prefix(&format!("http://{HTTP}"))
                .unwrap_or_else(|| panic!("{kind} url {url} is not on {HTTP}"));
            let (status, der) = http_get(HTTP, path).unwrap();
            assert_eq!(status, 200, "{url}");
            assert_eq!(&hex::encode(openssl::sha::sha256(&der)), sha256, "{url}");
            let file = scratch.path().join(format!("{kind}.crl"));
            std::fs::write(&file, &der).unwrap();
            let judged = ok(
                outside(
                    "openssl",
                    &[
                        "crl",
                        "-inform",
                        "DER",
                        "-in",
                        file.to_str().unwrap(),
                        "-noout",
                        "-crlnumber",
                        "-CAfile",
                        &format!("{HOME}/ca/chain.pem"),
                    ],
                ),
                "openssl crl",
            );
            assert!(
                judged.stderr.contains("verify OK"),
                "{kind}: {}",
                judged.stderr
            );
            let judged_number = judged
                .stdout
                .trim()
                .strip_prefix("crlNumber=0x")
                .and_then(|h| i64::from_str_radix(h, 16).ok());
            assert_eq!(judged_number, Some(*number), "{kind}: {}", judged.stdout);
        }
    }

    // Refused: a portal's certificate may not publish (exit 2 or 1, the reason named), and
    // an unreachable service is said as such (exit 1).
    let (portal_cert, portal_key) = system_certificate(scratch.path(), "portal");
    let swap = |from: &str, to: &str| -> Vec<String> {
        let mut a: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let i = a.iter().position(|w| w == from).unwrap() + 1;
        a[i] = to.to_owned();
        a
    };
    let mut refused = swap("--cert", portal_cert.to_str().unwrap());
    let i = refused.iter().position(|w| w == "--key").unwrap() + 1;
    refused[i] = portal_key.to_str().unwrap().to_owned();
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let r = as_user("nuc", &refused);
    assert_ne!(r.code, Some(0), "{}", r.stdout);
    assert!(
        r.stderr.contains("error: PERMISSION_DENIED: ") && r.stderr.contains("portal"),
        "{}",
        r.stderr
    );
    let away = swap("--endpoint", &format!("https://127.0.0.1:{}", free_port()));
    let away: Vec<&str> = away.iter().map(String::as_str).collect();
    let r = as_user("nuc", &away);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.starts_with("error: UNAVAILABLE: ") && r.stderr.contains("unreachable"),
        "{}",
        r.stderr
    );

    // Stopped as systemd stops it: SIGTERM, a clean exit.
    let mut serve = machine.children.pop().unwrap();
    let status = stop(&mut serve);
    assert!(status.success(), "nuc serve after SIGTERM: {status}");
    let mut registry = machine.children.pop().unwrap();
    stop(&mut registry);

    // Purged with a home in /var/lib/nuc: the home and the user stay, and it says so.
    for f in ["scheduler.pem", "scheduler.key"] {
        std::fs::remove_file(Path::new("/etc/nuc").join(f)).unwrap();
    }
    let purge = ok(
        outside("dpkg", &["--purge", "nuc"]),
        "dpkg --purge (home kept)",
    );
    assert!(
        purge.stderr.contains("/var/lib/nuc is kept"),
        "{}",
        purge.stderr
    );
    assert!(Path::new(&format!("{HOME}/nuc.toml")).exists());
    ok(
        outside("getent", &["passwd", "nuc"]),
        "the user nuc is kept with its home",
    );
    assert!(!Path::new("/usr/bin/nuc").exists() && !Path::new("/etc/nuc").exists());

    // Once the home is gone, a purge leaves nothing: no user, no group, no directory.
    for entry in std::fs::read_dir(HOME).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    ok(outside("dpkg", &["-i", deb_s]), "dpkg -i (again)");
    ok(outside("dpkg", &["--purge", "nuc"]), "dpkg --purge");
    assert_ne!(
        outside("getent", &["passwd", "nuc"]).code,
        Some(0),
        "user nuc left"
    );
    assert_ne!(
        outside("getent", &["group", "nuc"]).code,
        Some(0),
        "group nuc left"
    );
    for gone in [
        HOME,
        "/etc/nuc",
        "/usr/bin/nuc",
        "/lib/systemd/system/nuc.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    assert_ne!(
        outside("dpkg-query", &["-W", "-f", "${Status}", "nuc"])
            .stdout
            .trim(),
        "install ok installed"
    );
}
