//! gRPC's keepalive enforcement policy, which h2 does not have: a client
//! that pings too often is told GOAWAY (ENHANCE_YOUR_CALM,
//! "too_many_pings") and, if it keeps on, disconnected.
//!
//! [`Policed`] wraps each accepted connection and reads the HTTP/2 frame
//! headers going both ways (nothing else is parsed or copied). As in
//! grpc-go, a client PING counts as a strike when it comes sooner than
//! `min_ping_interval` after the previous one and the server has sent no
//! HEADERS or DATA since; the third strike schedules a GOAWAY, which is
//! written between two of the server's own frames, naming the last stream
//! the client opened (its calls in flight may finish). Pings after that
//! close the connection.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Strikes before the GOAWAY (grpc-go allows two).
const MAX_STRIKES: u32 = 2;
/// Further strikes, after the GOAWAY, before the connection is closed.
const STRIKES_AFTER_GOAWAY: u32 = 3;
/// The client connection preface: `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const DEBUG: &[u8] = b"too_many_pings";

/// Frame headers (type, flags, stream id) found in a byte stream.
#[derive(Debug, Default)]
struct FrameHeaders {
    /// Bytes still to skip before the next frame header (a preface, or the
    /// rest of a frame's payload).
    skip: usize,
    header: [u8; 9],
    filled: usize,
}

impl FrameHeaders {
    fn after(skip: usize) -> Self {
        FrameHeaders {
            skip,
            ..Default::default()
        }
    }

    /// Feeds `data`, calling `found(type, flags, stream)` for each frame
    /// header completed.
    fn feed(&mut self, mut data: &[u8], mut found: impl FnMut(u8, u8, u32)) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.filled).min(data.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 9 {
                self.filled = 0;
                let h = &self.header;
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                found(h[3], h[4], stream);
                self.skip = len;
            }
        }
    }

    /// Whether the stream stands between two frames.
    fn at_boundary(&self) -> bool {
        self.skip == 0 && self.filled == 0
    }
}

/// What the policy decided about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// Send GOAWAY at the next frame boundary.
    GoAway,
    /// GOAWAY was ignored: close.
    Close,
}

/// The policy's state for one connection.
#[derive(Debug)]
struct Policy {
    min_interval: Duration,
    last_ping: Option<Instant>,
    sent_since_ping: bool,
    strikes: u32,
    last_stream: u32,
    verdict: Verdict,
}

impl Policy {
    fn ping(&mut self, now: Instant) {
        let too_soon = self
            .last_ping
            .is_some_and(|last| now.duration_since(last) < self.min_interval);
        self.last_ping = Some(now);
        if too_soon && !self.sent_since_ping {
            self.strikes += 1;
        }
        self.sent_since_ping = false;
        self.verdict = match self.strikes {
            n if n > MAX_STRIKES + STRIKES_AFTER_GOAWAY => Verdict::Close,
            n if n > MAX_STRIKES && self.verdict == Verdict::Fine => Verdict::GoAway,
            _ => self.verdict,
        };
    }
}

/// A connection whose client is held to the keepalive policy.
#[derive(Debug)]
pub struct Policed<IO> {
    io: IO,
    inbound: FrameHeaders,
    outbound: FrameHeaders,
    policy: Policy,
    /// The GOAWAY frame being written, and how much of it is out.
    goaway: Option<(Vec<u8>, usize)>,
    goaway_sent: bool,
}

impl<IO> Policed<IO> {
    /// Holds the client of `io` to pings at least `min_ping_interval` apart.
    pub fn new(io: IO, min_ping_interval: Duration) -> Self {
        Policed {
            io,
            inbound: FrameHeaders::after(PREFACE_LEN),
            outbound: FrameHeaders::default(),
            policy: Policy {
                min_interval: min_ping_interval,
                last_ping: None,
                sent_since_ping: true,
                strikes: 0,
                last_stream: 0,
                verdict: Verdict::Fine,
            },
            goaway: None,
            goaway_sent: false,
        }
    }
}

fn goaway_frame(last_stream: u32) -> Vec<u8> {
    let len = (8 + DEBUG.len()) as u32;
    let mut frame = Vec::with_capacity(9 + len as usize);
    frame.extend_from_slice(&len.to_be_bytes()[1..]);
    frame.extend_from_slice(&[0x7, 0]);
    frame.extend_from_slice(&0u32.to_be_bytes());
    frame.extend_from_slice(&last_stream.to_be_bytes());
    frame.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    frame.extend_from_slice(DEBUG);
    frame
}

impl<IO: AsyncWrite + Unpin> Policed<IO> {
    /// Writes the pending GOAWAY, if any and if between frames; `Ready`
    /// once nothing of it is left to write.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.goaway.is_none()
            && !self.goaway_sent
            && self.policy.verdict == Verdict::GoAway
            && self.outbound.at_boundary()
        {
            tracing::warn!(
                strikes = self.policy.strikes,
                "a client pings too often: GOAWAY (too_many_pings)"
            );
            self.goaway = Some((goaway_frame(self.policy.last_stream), 0));
        }
        while let Some((frame, written)) = &mut self.goaway {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &frame[*written..]))?;
            *written += n;
            if *written == frame.len() {
                self.goaway = None;
                self.goaway_sent = true;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Policed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.policy.verdict == Verdict::Close {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client kept pinging too often after GOAWAY",
            )));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let now = Instant::now();
        let policy = &mut this.policy;
        this.inbound
            .feed(&buf.filled()[before..], |kind, flags, stream| match kind {
                PING if flags & ACK == 0 => policy.ping(now),
                HEADERS if stream % 2 == 1 => policy.last_stream = policy.last_stream.max(stream),
                _ => {}
            });
        if this.policy.verdict == Verdict::GoAway && !this.goaway_sent {
            // Written as soon as the server is between frames; a quiet
            // server writes nothing, so try now.
            let _ = this.poll_goaway(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Policed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_goaway(cx))?;
        let n = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, data))?;
        let policy = &mut this.policy;
        this.outbound.feed(&data[..n], |kind, _, _| {
            if matches!(kind, HEADERS | DATA) {
                policy.sent_since_ping = true;
            }
        });
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_goaway(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Policed<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_headers_are_found_however_the_bytes_are_split() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(HEADERS, 4, 1, &[0; 20]));
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        bytes.extend(frame(DATA, 1, 3, &[0; 300]));
        for split in [1, 5, 9, 64, bytes.len()] {
            let mut found = Vec::new();
            let mut headers = FrameHeaders::after(PREFACE_LEN);
            for chunk in bytes.chunks(split) {
                headers.feed(chunk, |kind, flags, stream| {
                    found.push((kind, flags, stream))
                });
            }
            assert_eq!(
                found,
                [(HEADERS, 4, 1), (PING, 0, 0), (DATA, 1, 3)],
                "split {split}"
            );
            assert!(headers.at_boundary());
        }
    }

    #[test]
    fn pings_too_close_without_replies_strike_then_goaway_then_close() {
        let mut policy = Policy {
            min_interval: Duration::from_secs(10),
            last_ping: None,
            sent_since_ping: true,
            strikes: 0,
            last_stream: 7,
            verdict: Verdict::Fine,
        };
        let t = Instant::now();
        policy.ping(t);
        policy.ping(t + Duration::from_secs(11));
        assert_eq!(policy.strikes, 0, "far enough apart");
        policy.ping(t + Duration::from_secs(12));
        policy.sent_since_ping = true;
        policy.ping(t + Duration::from_secs(13));
        assert_eq!(policy.strikes, 1, "a ping after data is not a strike");
        policy.ping(t + Duration::from_secs(14));
        assert_eq!(policy.verdict, Verdict::Fine);
        policy.ping(t + Duration::from_secs(15));
        assert_eq!(policy.verdict, Verdict::GoAway);
        for i in 0..STRIKES_AFTER_GOAWAY {
            policy.ping(t + Duration::from_secs(16 + u64::from(i)));
        }
        assert_eq!(policy.verdict, Verdict::Close);
    }

    #[test]
    fn the_goaway_names_the_last_stream_and_says_why() {
        let f = goaway_frame(7);
        assert_eq!(&f[3..5], &[0x7, 0]);
        assert_eq!(u32::from_be_bytes([f[9], f[10], f[11], f[12]]), 7);
        assert_eq!(
            u32::from_be_bytes([f[13], f[14], f[15], f[16]]),
            ENHANCE_YOUR_CALM
        );
        assert_eq!(&f[17..], DEBUG);
        assert_eq!(
            u32::from_be_bytes([0, f[0], f[1], f[2]]) as usize,
            f.len() - 9
        );
    }
}
