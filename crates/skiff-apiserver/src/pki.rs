//! The cluster's credentials, kept in the data directory: a CA (made once, kept forever), a
//! serving certificate signed by it (made fresh at every start, so new addresses and host
//! names are always in its SANs) and the admin bearer token.
//!
//! Layout under `<data-dir>/tls/`: `ca.crt`, `ca.key`, `serving.crt`, `serving.key`; the token
//! is `<data-dir>/token`. Private keys and the token are written mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a usable certificate or key ({message}); move the data directory's tls/ folder aside to make a new cluster CA"
    )]
    Damaged { path: PathBuf, message: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What the server needs to serve TLS and check tokens, and what a kubeconfig carries.
pub struct Credentials {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// What the server presents to node agents (kubelet's `--client-ca-file` checks it
    /// against the cluster CA): upstream's `--kubelet-client-certificate`.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    pub admin_token: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` atomically (temp file + rename) with the given mode.
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    // The mode of an existing file is not changed by open(); set it explicitly.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

/// Loads the cluster CA from `dir`, or creates it if this is a new cluster.
fn load_or_create_ca(dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    if cert_path.exists() && key_path.exists() {
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Damaged {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::Damaged {
            path: cert_path.clone(),
            message: e.to_string(),
        })?;
        return Ok((cert_pem, issuer));
    }
    let key = KeyPair::generate()?;
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params()?, key)?;
    let cert_pem = ca.pem();
    write_private(&key_path, key_pem.as_bytes(), 0o600)?;
    write_private(&cert_path, cert_pem.as_bytes(), 0o644)?;
    // Re-read through the same path as a restart, so both take one route.
    let key = KeyPair::from_pem(&key_pem)?;
    Ok((cert_pem.clone(), Issuer::from_ca_cert_pem(&cert_pem, key)?))
}

/// The names the serving certificate is valid for: the bind address (unless it is a
/// wildcard), the host name, loopback and the in-cluster names of the `kubernetes` Service.
pub fn serving_names(bind: IpAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if !bind.is_unspecified() {
        names.push(bind.to_string());
    }
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

/// Loads (or creates) the CA and token, and issues a fresh serving certificate for `names`.
/// The cluster CA as an issuer (what signs approved certificate requests), made by
/// [`load_or_create`] before.
pub fn ca_issuer(data_dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    load_or_create_ca(&data_dir.join("tls")).map(|(_, issuer)| issuer)
}

pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Credentials, PkiError> {
    let dir = data_dir.join("tls");
    let (ca_pem, ca) = load_or_create_ca(&dir)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.signed_by(&key, &ca)?;
    let serving_cert_pem = cert.pem();
    let serving_key_pem = key.serialize_pem();
    write_private(&dir.join("serving.crt"), serving_cert_pem.as_bytes(), 0o644)?;
    write_private(&dir.join("serving.key"), serving_key_pem.as_bytes(), 0o600)?;
    let (kubelet_client_cert_pem, kubelet_client_key_pem) = kubelet_client(&ca)?;

    let token_path = data_dir.join("token");
    let admin_token = match fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = random_hex(32);
            write_private(&token_path, format!("{t}\n").as_bytes(), 0o600)?;
            t
        }
    };
    Ok(Credentials {
        ca_pem,
        serving_cert_pem,
        serving_key_pem,
        kubelet_client_cert_pem,
        kubelet_client_key_pem,
        admin_token,
    })
}

/// The server's client certificate for node agents, as kubeadm names it
/// (`kube-apiserver-kubelet-client`, group `system:masters`). Made fresh at every start and
/// kept in memory only: nothing else needs it.
fn kubelet_client(ca: &Issuer<'static, KeyPair>) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_and_token_survive_a_restart_and_serving_certs_are_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let names = serving_names("127.0.0.1".parse().unwrap(), &[]);
        let first = load_or_create(dir.path(), &names).unwrap();
        let second = load_or_create(dir.path(), &names).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.admin_token, second.admin_token);
        assert_ne!(first.serving_key_pem, second.serving_key_pem);
        let mode = fs::metadata(dir.path().join("tls/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.admin_token.len(), 64);
    }

    #[test]
    fn a_damaged_ca_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), &["localhost".into()]).unwrap();
        fs::write(dir.path().join("tls/ca.key"), "garbage").unwrap();
        let err = load_or_create(dir.path(), &["localhost".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ca.key"), "{err}");
        assert!(err.contains("move the data directory's tls/"), "{err}");
    }
}
