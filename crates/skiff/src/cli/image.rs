//! `skiff image`: the images of the cluster's embedded registry, which every node pulls
//! from first. `import` loads an archive, `pull` copies from another registry, `ls` and
//! `rm` list and remove.
//!
//! The cluster is found through a kubeconfig as kubectl finds it (`--kubeconfig`, then
//! `KUBECONFIG`, then the server's default path); the registry's port comes from the
//! ConfigMap the server publishes, on the API server's host. Pushes authenticate with the
//! kubeconfig's token.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use skiff_image::registry_client::Repository;
use skiff_image::{Credentials, Endpoint, Keyring, RegistriesConfig, RegistryClient};
use skiff_oci::Reference;

use super::progress::PullDisplay;

const DEFAULT_KUBECONFIG: &str = "/etc/skiff/kubeconfig.yaml";

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Load the images of a `docker save` or OCI layout archive (FILE, or - for standard
    /// input) into the cluster's registry under their names.
    Import {
        file: String,
        /// Name for images the archive leaves unnamed, or whose name is only a tag.
        #[arg(long, value_name = "IMAGE")]
        name: Option<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List the images in the cluster's registry.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Remove images (tags) from the cluster's registry; an image goes with its last tag.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Copy an image from its registry into the cluster's (this machine's platform).
    Pull {
        image: String,
        /// The source registry speaks plain HTTP.
        #[arg(long)]
        insecure: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Args)]
pub struct ClusterArgs {
    /// Kubeconfig of the cluster (else $KUBECONFIG, else the server's default path).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The registry as HOST:PORT, instead of what the cluster publishes.
    #[arg(long, value_name = "HOST:PORT")]
    registry: Option<String>,
}

impl ImageCommand {
    pub async fn run(self) -> Result<()> {
        match self {
            ImageCommand::Import {
                file,
                name,
                cluster,
            } => {
                let cluster = cluster.connect().await?;
                import(&cluster, &file, name.as_deref()).await
            }
            ImageCommand::Ls { cluster } => list(&cluster.connect().await?).await,
            ImageCommand::Rm { images, cluster } => {
                let cluster = cluster.connect().await?;
                for image in images {
                    remove(&cluster, &image).await?;
                }
                Ok(())
            }
            ImageCommand::Pull {
                image,
                insecure,
                cluster,
            } => pull(&cluster.connect().await?, &image, insecure).await,
        }
    }
}

/// The cluster's registry and the credentials to push to it.
struct Cluster {
    client: RegistryClient,
    endpoint: Endpoint,
    credentials: Credentials,
}

impl ClusterArgs {
    fn kubeconfig_path(&self) -> PathBuf {
        if let Some(path) = &self.kubeconfig {
            return path.clone();
        }
        if let Ok(list) = std::env::var("KUBECONFIG")
            && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
        {
            return first;
        }
        PathBuf::from(DEFAULT_KUBECONFIG)
    }

    async fn connect(self) -> Result<Cluster> {
        let path = self.kubeconfig_path();
        let yaml = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the kubeconfig {} (is the server running here? pass --kubeconfig or set KUBECONFIG)",
                path.display()
            )
        })?;
        let config = skiff_client::config_from_kubeconfig(&yaml)
            .await
            .with_context(|| format!("the kubeconfig {}", path.display()))?;
        let token = config
            .auth_info
            .token
            .as_ref()
            .map(|t| t.expose_secret().to_string())
            .with_context(|| {
                format!(
                    "the kubeconfig {} has no token; the registry takes the cluster's token as the password",
                    path.display()
                )
            })?;
        let host = config.cluster_url.host().unwrap_or("127.0.0.1").to_string();
        let registry = match self.registry {
            Some(registry) => registry,
            None => {
                let client = skiff_client::client_from_kubeconfig(&yaml)
                    .await
                    .with_context(|| format!("the kubeconfig {}", path.display()))?;
                let port = skiff_client::cluster_registry::port(&client)
                    .await
                    .with_context(|| format!("asking the API server at {} where its registry is", config.cluster_url))?
                    .context("the cluster publishes no registry (ConfigMap kube-public/skiff-registry); pass --registry HOST:PORT")?;
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
        };
        Ok(Cluster {
            client: RegistryClient::new(RegistriesConfig::default()),
            endpoint: Endpoint::new(&format!("http://{registry}")),
            credentials: Credentials {
                username: "skiff".into(),
                password: token,
            },
        })
    }
}

impl Cluster {
    /// The cluster registry's repository for an image name: the path without the
    /// registry host, as nodes ask their mirrors (`gcr.io/p/app` → `p/app`).
    fn repository(&self, reference: &Reference) -> Repository {
        self.client.repository(
            &self.endpoint,
            &reference.repository,
            Some(self.credentials.clone()),
            true,
        )
    }
}

fn tag_of(reference: &Reference) -> &str {
    reference.tag.as_deref().unwrap_or("latest")
}

async fn import(cluster: &Cluster, file: &str, name: Option<&str>) -> Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let dir = scratch.path().to_path_buf();
    let source = file.to_string();
    let name_owned = name.map(str::to_string);
    let images = tokio::task::spawn_blocking(move || {
        let read = |stream: Box<dyn std::io::Read>| {
            skiff_image::archive::read_archive(stream, &dir, name_owned.as_deref())
        };
        if source == "-" {
            read(Box::new(std::io::stdin().lock()))
        } else {
            let f = std::fs::File::open(&source)
                .map_err(|e| anyhow::anyhow!("cannot open {source}: {e}"))?;
            read(Box::new(f))
        }
        .map_err(anyhow::Error::from)
    })
    .await?
    .with_context(|| format!("reading the image archive {file}"))?;
    for image in &images {
        for reference in &image.names {
            let repo = cluster.repository(reference);
            let shown = reference.familiar();
            let report = |blob: &skiff_image::archive::ArchiveBlob, sent: bool| {
                let what = if sent { "pushed" } else { "present" };
                eprintln!(
                    "  {} {what} ({})",
                    short(&blob.digest),
                    human_size(blob.size)
                );
            };
            let digest = image
                .push(&repo, tag_of(reference), &report)
                .await
                .with_context(|| format!("importing {shown} into {}", cluster.endpoint))?;
            println!("imported {shown} ({digest}, {})", human_size(image.size()));
        }
    }
    Ok(())
}

async fn list(cluster: &Cluster) -> Result<()> {
    let repositories = cluster
        .client
        .catalog(&cluster.endpoint, Some(cluster.credentials.clone()))
        .await
        .with_context(|| format!("listing the images of {}", cluster.endpoint))?;
    let mut rows = vec![[
        "IMAGE".to_string(),
        "TAG".to_string(),
        "DIGEST".to_string(),
        "SIZE".to_string(),
    ]];
    for name in repositories {
        let repo = cluster.client.repository(
            &cluster.endpoint,
            &name,
            Some(cluster.credentials.clone()),
            false,
        );
        let mut tags = repo.tags().await.unwrap_or_default();
        tags.sort();
        let shown = name.strip_prefix("library/").unwrap_or(&name).to_string();
        for tag in tags {
            let Ok(manifest) = repo.manifest(&tag).await else {
                continue;
            };
            rows.push([
                shown.clone(),
                tag,
                short(&manifest.digest).to_string(),
                human_size(skiff_oci::manifest::listed_size(&manifest.bytes)),
            ]);
        }
    }
    print_table(&rows);
    Ok(())
}

async fn remove(cluster: &Cluster, image: &str) -> Result<()> {
    let reference = Reference::parse(image)?;
    let repo = cluster.repository(&reference);
    let shown = reference.familiar();
    let target = repo
        .manifest(reference.object())
        .await
        .with_context(|| format!("removing {shown}"))?;
    if let Some(tag) = &reference.tag
        && reference.digest.is_none()
    {
        // Other tags on the same image keep it; this one goes.
        let mut others = 0;
        for other in repo.tags().await.unwrap_or_default() {
            if &other != tag
                && repo
                    .manifest(&other)
                    .await
                    .is_ok_and(|m| m.digest == target.digest)
            {
                others += 1;
            }
        }
        if others > 0 {
            repo.delete_manifest(tag)
                .await
                .with_context(|| format!("removing {shown}"))?;
            println!("untagged {shown}");
            return Ok(());
        }
    }
    repo.delete_manifest(&target.digest)
        .await
        .with_context(|| format!("removing {shown}"))?;
    println!("deleted {shown} ({})", target.digest);
    Ok(())
}

async fn pull(cluster: &Cluster, image: &str, insecure: bool) -> Result<()> {
    let reference = Reference::parse(image)?;
    let mut config = RegistriesConfig::default();
    if insecure {
        config.configs.insert(
            reference.registry.clone(),
            skiff_image::config::HostConfig {
                insecure: true,
                ..Default::default()
            },
        );
    }
    let source_client = RegistryClient::new(config);
    let endpoints = [Endpoint::for_registry(
        &reference.registry,
        source_client.config(),
    )];
    let keyring = docker_keyring();
    let resolved = skiff_image::resolve::resolve(
        &source_client,
        &reference,
        &endpoints,
        &keyring,
        &skiff_oci::Platform::current(),
    )
    .await?;
    let display = PullDisplay::new(std::io::stderr().is_terminal());
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let dest = cluster.repository(&reference);
    let tag = match (&reference.tag, &reference.digest) {
        (Some(tag), _) => tag.clone(),
        (None, Some(digest)) => digest.clone(),
        (None, None) => "latest".to_string(),
    };
    let digest = skiff_image::copy::copy_image(
        &resolved,
        &dest,
        &tag,
        scratch.path(),
        &reference.to_string(),
        Some(display.progress()),
    )
    .await?;
    display.finish();
    let kind = if resolved.index.is_some() {
        format!(" ({} from its index)", skiff_oci::Platform::current())
    } else {
        String::new()
    };
    println!(
        "pulled {}{kind} into the cluster registry ({digest})",
        reference.familiar()
    );
    Ok(())
}

/// Credentials from `~/.docker/config.json` (as docker login writes them), if any.
fn docker_keyring() -> Keyring {
    let mut keyring = Keyring::default();
    let path = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .map(|d| d.join("config.json"));
    if let Some(bytes) = path.and_then(|p| std::fs::read(p).ok())
        && let Err(e) = keyring.add_docker_config(&bytes)
    {
        eprintln!("warning: ignoring ~/.docker/config.json: {e}");
    }
    keyring
}

/// A digest as people read it: the first 12 hex digits.
pub(super) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    // By characters: a registry's descriptor need not be ASCII.
    hex.char_indices()
        .nth(12)
        .map_or(hex, |(end, _)| &hex[..end])
}

/// Decimal units with three significant digits, as docker and crictl print sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let number = format!("{value:.decimals$}");
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        &number
    };
    format!("{number}{}", UNITS[unit])
}

fn print_table(rows: &[[String; 4]]) {
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_crictl_does() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1_200), "1.2kB");
        assert_eq!(human_size(4_276_000), "4.28MB");
        assert_eq!(human_size(12_345_678_901), "12.3GB");
        assert_eq!(human_size(100_000_000), "100MB");
    }
}
