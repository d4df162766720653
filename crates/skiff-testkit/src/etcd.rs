//! A throwaway etcd server (Debian's `etcd-server` package) on loopback ports, with its data in a
//! temporary directory that goes away with it.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

/// A running etcd. Killed (and its data removed) on drop.
pub struct EtcdServer {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<EtcdTls>,
}

/// The certificates of an etcd that serves TLS and requires client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA that signed both the serving and the client certificate.
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    server_cert_file: PathBuf,
    server_key_file: PathBuf,
}

impl EtcdServer {
    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> io::Result<Self> {
        Self::start_with(false)
    }

    /// Starts etcd serving TLS on its client port and requiring a client certificate signed by
    /// its own CA ([`Self::tls`] has the files a client needs).
    pub fn start_tls() -> io::Result<Self> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("skiff-etcd-").tempdir()?;
        let tls = if tls {
            Some(EtcdTls::generate(&dir.path().join("pki"))?)
        } else {
            None
        };
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: free_port()?,
            peer_port: free_port()?,
            tls,
        };
        // A free port can be taken by another test between our probe and etcd's bind
        // (tests start etcds in parallel): then try fresh ports.
        let mut attempts = 0;
        loop {
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) if attempts < 5 && e.to_string().contains("address already in use") => {
                    attempts += 1;
                    server.kill();
                    // Whatever it wrote named the old ports.
                    let _ = std::fs::remove_dir_all(server.dir.path().join("data"));
                    server.client_port = free_port()?;
                    server.peer_port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `http(s)://127.0.0.1:PORT`, as `--datastore-endpoint` takes it.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The certificates, for a server started with [`Self::start_tls`].
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// The etcd process id (for tests that signal it).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills etcd (SIGKILL) and waits for it to exit. Its data stays for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) -> io::Result<()> {
        let binary = find_etcd()?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut command = Command::new(binary);
        command
            .arg("--name=skiff-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=skiff-test={peer}"))
            .args(self.tls.iter().flat_map(|tls| {
                [
                    format!("--cert-file={}", tls.server_cert_file.display()),
                    format!("--key-file={}", tls.server_key_file.display()),
                    format!("--trusted-ca-file={}", tls.ca_file.display()),
                    "--client-cert-auth".to_owned(),
                ]
            }))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill etcd if the
        // thread that started it dies, so a crashed test cannot leave etcd running.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(command.spawn()?);
        self.wait_healthy(Duration::from_secs(30))
    }

    fn wait_healthy(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "etcd exited with {status} during start-up; its log:\n{}",
                    self.log_tail()
                )));
            }
            let ready = match self.tls {
                // Plain-HTTP health needs no client certificate; with TLS, an accepting
                // listener is the readiness signal (clients retry until etcd answers).
                None => health(self.client_port).unwrap_or(false),
                Some(_) => TcpStream::connect(("127.0.0.1", self.client_port)).is_ok(),
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "etcd did not become healthy within {limit:?}; its log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_etcd() -> io::Result<&'static Path> {
    for candidate in ["/usr/bin/etcd", "/usr/local/bin/etcd"] {
        let path = Path::new(candidate);
        if path.exists() {
            return Ok(path);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "etcd is not installed: install Debian's etcd-server package (apt-get install \
         etcd-server), or run ./scripts/install-deps.sh",
    ))
}

/// Asks etcd's `/health` endpoint over plain HTTP on loopback.
fn health(port: u16) -> io::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply.contains("\"health\":\"true\""))
}

impl EtcdTls {
    /// Mints a CA, a serving certificate for 127.0.0.1/localhost and a client certificate.
    fn generate(dir: &Path) -> io::Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
            ExtendedKeyUsagePurpose as Usage, IsCa, KeyPair, KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| io::Error::other(format!("generating test certificates: {e}"));
        std::fs::create_dir_all(dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.distinguished_name
            .push(DnType::CommonName, "skiff test etcd CA");
        let ca =
            CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(err)?).map_err(err)?;
        let leaf = |names: Vec<String>, usage: Usage, name: &str| -> io::Result<(String, String)> {
            let key = KeyPair::generate().map_err(err)?;
            let mut params = CertificateParams::new(names).map_err(err)?;
            params.extended_key_usages = vec![usage];
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).map_err(err)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let server = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            Usage::ServerAuth,
            "etcd",
        )?;
        let client = leaf(vec![], Usage::ClientAuth, "skiff")?;
        let tls = EtcdTls {
            ca_file: dir.join("ca.pem"),
            client_cert_file: dir.join("client.pem"),
            client_key_file: dir.join("client-key.pem"),
            server_cert_file: dir.join("server.pem"),
            server_key_file: dir.join("server-key.pem"),
        };
        std::fs::write(&tls.ca_file, ca.pem())?;
        std::fs::write(&tls.server_cert_file, server.0)?;
        std::fs::write(&tls.server_key_file, server.1)?;
        std::fs::write(&tls.client_cert_file, client.0)?;
        std::fs::write(&tls.client_key_file, client.1)?;
        Ok(tls)
    }
}
