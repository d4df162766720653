//! Names outside the cluster domain: asked of the node's own resolvers (the nameservers
//! of its `resolv.conf`), answers cached for their TTL (at most 30 s, as k3s's CoreDNS
//! `cache 30`; a negative answer for its SOA's minimum, at most 30 s). Each question goes
//! to the resolvers in order until one answers.
//!
//! Questions leave through one UDP socket the caller made in the node's network namespace
//! (a socket acts in the namespace it was made in, whatever thread uses it), and answers
//! are matched to questions by id and resolver; a receiving task hands each to its asker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::sync::oneshot;

/// The longest an answer is kept.
const MAX_TTL: Duration = Duration::from_secs(30);
/// How long one resolver gets to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Entries kept at most; the cache is emptied of expired ones when it is full.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no resolver to forward to (the node's resolv.conf names none)")]
    NoResolver,
    #[error("no resolver answered ({0})")]
    Unanswered(String),
}

type Waiting = Arc<Mutex<HashMap<(u16, SocketAddr), oneshot::Sender<Message>>>>;

struct Cached {
    response: Message,
    stored: Instant,
    expires: Instant,
}

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<(Name, RecordType), Cached>>,
    socket: Option<Arc<tokio::net::UdpSocket>>,
    waiting: Waiting,
}

/// How long `response` may be cached.
fn lifetime(response: &Message) -> Duration {
    let ttl = if response.answers.is_empty() {
        response
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                _ => None,
            })
            .unwrap_or(0)
    } else {
        response.answers.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    Duration::from_secs(u64::from(ttl)).min(MAX_TTL)
}

impl Forwarder {
    /// Forwards to `upstreams` (IPv4) through `socket`; must be called in a Tokio runtime
    /// (it starts the receiving task, which ends with the forwarder).
    pub fn new(
        upstreams: Vec<SocketAddr>,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Forwarder> {
        socket.set_nonblocking(true)?;
        let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
        let waiting: Waiting = Arc::default();
        tokio::spawn(receive(Arc::downgrade(&socket), waiting.clone()));
        Ok(Forwarder {
            upstreams: upstreams.into_iter().filter(SocketAddr::is_ipv4).collect(),
            cache: Mutex::new(HashMap::new()),
            socket: Some(socket),
            waiting,
        })
    }

    /// A forwarder with nowhere to forward: every outside name fails.
    pub fn none() -> Forwarder {
        Forwarder {
            upstreams: Vec::new(),
            cache: Mutex::new(HashMap::new()),
            socket: None,
            waiting: Arc::default(),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The answer to `query`: from the cache (TTLs counting down), or from a resolver.
    pub async fn resolve(&self, query: &Query) -> Result<Message, ForwardError> {
        let key = (query.name().to_lowercase(), query.query_type());
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let Some(socket) = self.socket.as_ref().filter(|_| !self.upstreams.is_empty()) else {
            return Err(ForwardError::NoResolver);
        };
        let mut failures = Vec::new();
        for upstream in &self.upstreams {
            match self.ask(socket, *upstream, query).await {
                Ok(response) => {
                    let keep = lifetime(&response);
                    if !keep.is_zero() && response.metadata.response_code != ResponseCode::ServFail
                    {
                        self.store(key, &response, keep);
                    }
                    return Ok(response);
                }
                Err(e) => failures.push(format!("{upstream}: {e}")),
            }
        }
        Err(ForwardError::Unanswered(failures.join("; ")))
    }

    fn cached(&self, key: &(Name, RecordType)) -> Option<Message> {
        let cache = self.cache.lock().expect("not poisoned");
        let hit = cache.get(key)?;
        let now = Instant::now();
        if now >= hit.expires {
            return None;
        }
        let age = u32::try_from(now.duration_since(hit.stored).as_secs()).unwrap_or(u32::MAX);
        let mut response = hit.response.clone();
        for record in response
            .answers
            .iter_mut()
            .chain(response.authorities.iter_mut())
            .chain(response.additionals.iter_mut())
        {
            record.ttl = record.ttl.saturating_sub(age);
        }
        Some(response)
    }

    fn store(&self, key: (Name, RecordType), response: &Message, keep: Duration) {
        let mut cache = self.cache.lock().expect("not poisoned");
        let now = Instant::now();
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                response: response.clone(),
                stored: now,
                expires: now + keep,
            },
        );
    }
}

impl Forwarder {
    /// One question to one resolver.
    async fn ask(
        &self,
        socket: &tokio::net::UdpSocket,
        upstream: SocketAddr,
        query: &Query,
    ) -> std::io::Result<Message> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut waiting = self.waiting.lock().expect("not poisoned");
            let id = std::iter::repeat_with(rand_id)
                .find(|id| !waiting.contains_key(&(*id, upstream)))
                .expect("an endless supply of ids");
            waiting.insert((id, upstream), tx);
            id
        };
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(query.clone());
        let result = async {
            let bytes = message.to_vec().map_err(std::io::Error::other)?;
            socket.send_to(&bytes, upstream).await?;
            tokio::time::timeout(TIMEOUT, rx)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 2 s")
                })?
                .map_err(|_| std::io::Error::other("the receiving task ended"))
        }
        .await;
        self.waiting
            .lock()
            .expect("not poisoned")
            .remove(&(id, upstream));
        result
    }
}

/// Hands each answer on the socket to the question waiting for it (same id, from the
/// resolver asked); ends when the forwarder is gone.
async fn receive(socket: std::sync::Weak<tokio::net::UdpSocket>, waiting: Waiting) {
    let mut buffer = vec![0u8; 65535];
    loop {
        let Some(socket) = socket.upgrade() else {
            return;
        };
        let received =
            tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buffer)).await;
        drop(socket);
        let (n, from) = match received {
            Ok(Ok(got)) => got,
            // An ICMP error from a resolver that is not there: its asker times out or the
            // next resolver answers.
            Ok(Err(_)) | Err(_) => continue,
        };
        let Ok(response) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        let asker = waiting
            .lock()
            .expect("not poisoned")
            .remove(&(response.metadata.id, from));
        if let Some(asker) = asker {
            let _ = asker.send(response);
        }
    }
}

/// A query id no one can predict (a forwarded answer is only as good as its id).
fn rand_id() -> u16 {
    let mut bytes = [0u8; 2];
    // The kernel's generator does not fail once the machine has booted; a fixed id would
    // only make spoofing easier, never an answer wrong.
    let _ = getrandom::fill(&mut bytes);
    u16::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, SOA};

    #[test]
    fn answers_live_for_their_smallest_ttl_capped_and_denials_for_the_soa_minimum() {
        let name = Name::from_ascii("example.com.").unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.answers.push(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m.answers.push(Record::from_rdata(
            name.clone(),
            12,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        assert_eq!(lifetime(&m), Duration::from_secs(12));
        m.answers[1].ttl = 3600;
        assert_eq!(lifetime(&m), MAX_TTL);
        let mut denial = Message::new(1, MessageType::Response, OpCode::Query);
        denial.authorities.push(Record::from_rdata(
            name.clone(),
            60,
            RData::SOA(SOA::new(name.clone(), name, 1, 1, 1, 1, 7)),
        ));
        assert_eq!(lifetime(&denial), Duration::from_secs(7));
    }
}
