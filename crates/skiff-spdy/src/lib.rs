//! SPDY/3.1 framing, the server side of what kubectl's streams use: exec for clients before
//! WebSocket (kubectl ≤ 1.29, and any client's fall-back) and port-forward always (bare, or
//! inside WebSocket messages for kubectl ≥ 1.31).
//!
//! Only what those clients send is understood: SYN_STREAM (a new stream, answered with
//! SYN_REPLY at once, as the client waits for it), DATA with FIN, RST_STREAM, PING (echoed)
//! and GOAWAY; SETTINGS, WINDOW_UPDATE and HEADERS are read and ignored — the clients keep no
//! flow-control windows. Header blocks are zlib streams, one per direction for the whole
//! connection, primed with the dictionary of the SPDY/3 draft (§2.6.10.1).

use std::io;
use std::sync::Arc;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest frame accepted (a header block or a data frame); kubectl's are far smaller.
const MAX_FRAME: usize = 16 << 20;
/// The largest data frame sent.
pub const MAX_DATA: usize = 32 * 1024;

/// RST_STREAM's status for a stream this side will not serve.
pub const REFUSED_STREAM: u32 = 3;

/// The header names of the SPDY/3 dictionary, each written with a 4-byte length.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail: status codes and common values, without lengths.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov ",
    "Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut out = Vec::with_capacity(1500);
    for word in DICTIONARY_WORDS {
        out.extend_from_slice(&(word.len() as u32).to_be_bytes());
        out.extend_from_slice(word.as_bytes());
    }
    out.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    out
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

pub type Headers = Vec<(String, String)>;

/// Finds a header (names are lower case on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    Data {
        id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    RstStream {
        id: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing to do.
    Ignored,
}

/// Reads frames from the client.
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
    dictionary: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> FrameReader<R> {
        FrameReader {
            io,
            inflate: Decompress::new(true),
            dictionary: dictionary(),
        }
    }

    /// The next frame; `None` when the connection ended cleanly between frames.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if length > MAX_FRAME {
            return Err(invalid(format!("a SPDY frame of {length} bytes")));
        }
        let mut body = vec![0u8; length];
        self.io.read_exact(&mut body).await?;
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                fin,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(invalid(format!("SPDY version {version}, not 3")));
        }
        let id_at = |at: usize| -> io::Result<u32> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
                .ok_or_else(|| invalid("a short SPDY control frame"))
        };
        Ok(Some(match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let id = id_at(0)?;
                let block = body
                    .get(10..)
                    .ok_or_else(|| invalid("a short SYN_STREAM"))?;
                let headers = self.headers(block)?;
                Frame::SynStream { id, fin, headers }
            }
            RST_STREAM => Frame::RstStream { id: id_at(0)? },
            PING => Frame::Ping { id: id_at(0)? },
            GOAWAY => Frame::GoAway,
            _ => Frame::Ignored,
        }))
    }

    fn headers(&mut self, block: &[u8]) -> io::Result<Headers> {
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut used = 0usize;
        loop {
            let before = self.inflate.total_in();
            let result =
                self.inflate
                    .decompress_vec(&block[used..], &mut out, FlushDecompress::Sync);
            used += (self.inflate.total_in() - before) as usize;
            match result {
                Ok(_) if used >= block.len() && out.len() < out.capacity() => break,
                Ok(_) => {
                    if out.len() > MAX_FRAME {
                        return Err(invalid("a SPDY header block too large"));
                    }
                    out.reserve(out.capacity().max(1024));
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| invalid(format!("SPDY header dictionary: {e}")))?;
                }
                Err(e) => return Err(invalid(format!("SPDY header block: {e}"))),
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(block: &[u8]) -> io::Result<Headers> {
    let mut at = 0usize;
    let mut take = |n: usize| -> io::Result<&[u8]> {
        let slice = block
            .get(at..at + n)
            .ok_or_else(|| invalid("a truncated SPDY header block"))?;
        at += n;
        Ok(slice)
    };
    let count = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let pairs = count(take(4)?);
    let mut headers = Vec::with_capacity(pairs.min(64));
    for _ in 0..pairs {
        let n = count(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = count(take(4)?);
        let value = take(n)?;
        // Several values of one name are NUL-separated.
        for v in value.split(|&b| b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(headers)
}

struct Writer<W> {
    io: W,
    deflate: Compress,
}

/// Writes frames to the client; cheap to clone, one frame at a time.
pub struct FrameWriter<W> {
    inner: Arc<Mutex<Writer<W>>>,
}

impl<W> Clone for FrameWriter<W> {
    fn clone(&self) -> Self {
        FrameWriter {
            inner: self.inner.clone(),
        }
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> FrameWriter<W> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary())
            .expect("a fresh zlib stream takes a dictionary");
        FrameWriter {
            inner: Arc::new(Mutex::new(Writer { io, deflate })),
        }
    }

    async fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut w = self.inner.lock().await;
        w.io.write_all(frame).await?;
        w.io.flush().await
    }

    /// Accepts a stream the client opened (no headers; not finished).
    pub async fn reply(&self, id: u32) -> io::Result<()> {
        let mut w = self.inner.lock().await;
        // An empty header block: zero pairs, compressed on the connection's stream.
        let mut block = Vec::with_capacity(64);
        w.deflate
            .compress_vec(&0u32.to_be_bytes(), &mut block, FlushCompress::Sync)
            .map_err(|e| invalid(e.to_string()))?;
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&block);
        let frame = control(SYN_REPLY, 0, &body);
        w.io.write_all(&frame).await?;
        w.io.flush().await
    }

    /// Sends bytes on a stream, in frames of at most [`MAX_DATA`]; `fin` ends this side.
    pub async fn data(&self, id: u32, data: &[u8], fin: bool) -> io::Result<()> {
        let mut chunks: Vec<&[u8]> = data.chunks(MAX_DATA).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut frame = Vec::with_capacity(8 + chunk.len());
            frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
            frame.push(if fin && i == last { FLAG_FIN } else { 0 });
            frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
            frame.extend_from_slice(chunk);
            self.send(&frame).await?;
        }
        Ok(())
    }

    pub async fn ping(&self, id: u32) -> io::Result<()> {
        self.send(&control(PING, 0, &id.to_be_bytes())).await
    }

    pub async fn reset(&self, id: u32, status: u32) -> io::Result<()> {
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&status.to_be_bytes());
        self.send(&control(RST_STREAM, 0, &body)).await
    }

    /// Ends the connection: GOAWAY, then the transport's own close.
    pub async fn close(&self) {
        let mut body = 0u32.to_be_bytes().to_vec();
        body.extend_from_slice(&0u32.to_be_bytes());
        let _ = self.send(&control(GOAWAY, 0, &body)).await;
        let _ = self.inner.lock().await.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's SYN_STREAM, as kubectl's framer writes it: its own zlib stream.
    fn syn_stream(deflate: &mut Compress, id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut block = Vec::with_capacity(raw.len() + 64);
        deflate
            .compress_vec(&raw, &mut block, FlushCompress::Sync)
            .unwrap();
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&block);
        control(SYN_STREAM, 0, &body)
    }

    fn client_deflate() -> Compress {
        let mut d = Compress::new(Compression::default(), true);
        d.set_dictionary(&dictionary()).unwrap();
        d
    }

    #[test]
    fn the_dictionary_is_the_drafts() {
        let d = dictionary();
        // Its size, and the Adler-32 every SPDY/3 peer puts in its zlib header (DICTID).
        assert_eq!(d.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &d {
            a = (a + byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(format!("{:08x}", (b << 16) | a), "e3c6a7c2");
    }

    #[tokio::test]
    async fn frames_round_trip_with_compressed_headers_across_one_connection() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let mut reader = FrameReader::new(server_read);
        let writer = FrameWriter::new(server_write);

        let mut deflate = client_deflate();
        for (id, kind) in [(1, "error"), (3, "stdout")] {
            let frame = syn_stream(&mut deflate, id, &[("streamtype", kind), ("port", "80")]);
            client_write.write_all(&frame).await.unwrap();
        }
        let mut data = 3u32.to_be_bytes().to_vec();
        data.extend_from_slice(&[FLAG_FIN, 0, 0, 2, b'h', b'i']);
        client_write.write_all(&data).await.unwrap();
        client_write
            .write_all(&control(PING, 0, &7u32.to_be_bytes()))
            .await
            .unwrap();

        let first = reader.next().await.unwrap().unwrap();
        let Frame::SynStream { id: 1, headers, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!(header(&headers, "streamtype"), Some("error"));
        let second = reader.next().await.unwrap().unwrap();
        let Frame::SynStream { id: 3, headers, .. } = second else {
            panic!("{second:?}")
        };
        assert_eq!(header(&headers, "streamtype"), Some("stdout"));
        assert_eq!(header(&headers, "port"), Some("80"));
        assert_eq!(
            reader.next().await.unwrap(),
            Some(Frame::Data {
                id: 3,
                fin: true,
                data: b"hi".to_vec()
            })
        );
        assert_eq!(reader.next().await.unwrap(), Some(Frame::Ping { id: 7 }));

        // What the server writes, read back by a reader of the same kind.
        writer.reply(1).await.unwrap();
        writer
            .data(3, &vec![b'x'; MAX_DATA + 10], true)
            .await
            .unwrap();
        let mut back = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while back.len() < 8 + 8 + MAX_DATA + 8 + 10 {
            let n = client_read.read(&mut buf).await.unwrap();
            back.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&back[..4], &[0x80, 3, 0, SYN_REPLY as u8]);
        let reply_len = u32::from_be_bytes([0, back[5], back[6], back[7]]) as usize;
        let data = &back[8 + reply_len..];
        assert_eq!(
            &data[..5],
            &[0, 0, 0, 3, 0],
            "a data frame on stream 3, not the last"
        );
        let second = &data[8 + MAX_DATA..];
        assert_eq!(second[4], FLAG_FIN);
        assert_eq!(&second[5..8], &[0, 0, 10]);
    }

    /// The frame parser's fuzzing in the ordinary test run (the parser is private to the
    /// agent, out of reach of the fuzz/ targets): valid connections, mutated byte by byte,
    /// truncated and extended, must read as frames or as an error — never a panic or a hang.
    #[tokio::test]
    async fn mutated_connections_never_panic() {
        let mut deflate = client_deflate();
        let mut valid = Vec::new();
        for (id, kind) in [(1, "error"), (3, "stdout"), (5, "stdin")] {
            valid.extend(syn_stream(
                &mut deflate,
                id,
                &[("streamtype", kind), ("port", "80")],
            ));
        }
        valid.extend_from_slice(&3u32.to_be_bytes());
        valid.extend_from_slice(&[FLAG_FIN, 0, 0, 2, b'h', b'i']);
        valid.extend(control(PING, 0, &7u32.to_be_bytes()));
        // xorshift64: reproducible inputs without a dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                match next() % 4 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes[at] ^= 1 << (next() % 8),
                    2 => bytes.truncate(at.max(1)),
                    _ => bytes.insert(at, next() as u8),
                }
            }
            // Keep declared lengths small enough that a round does not allocate 16 MiB.
            if bytes.len() >= 8 && bytes[5] > 0 {
                bytes[5] = 0;
            }
            let mut reader = FrameReader::new(&bytes[..]);
            let mut frames = 0;
            while let Ok(Some(_)) = reader.next().await {
                frames += 1;
                assert!(
                    frames <= bytes.len(),
                    "round {round}: more frames than bytes"
                );
            }
        }
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            vec![0x80, 2, 0, 1, 0, 0, 0, 0],
            vec![0x80, 3, 0, 1, 0, 0, 0, 2, 0, 0],
            vec![
                0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xde, 0xad,
            ],
            vec![0x80, 3, 0, 1, 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut reader = FrameReader::new(&bytes[..]);
            assert!(reader.next().await.is_err(), "{bytes:?}");
        }
        let mut empty = FrameReader::new(&[][..]);
        assert_eq!(empty.next().await.unwrap(), None);
    }
}
