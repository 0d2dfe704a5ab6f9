//! Size-prefixed framing: every Kafka request and response is a big-endian i32 length
//! followed by that many bytes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a frame body starts with before its bytes arrive.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Kafka's `socket.request.max.bytes` default.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} is outside 0..={max}")]
    InvalidSize { size: i32, max: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the size prefix of the next frame: Ok(None) on a clean EOF before a frame starts.
/// The caller reads the body with [`read_frame_body`], and may first make room for it.
pub async fn read_frame_size<R: AsyncRead + Unpin>(
    r: &mut R,
    max_size: usize,
) -> Result<Option<usize>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = r.read(&mut prefix[filled..]).await?;
        if n == 0 {
            // A peer that closes between frames is done; one that closes mid-prefix is not.
            return if filled == 0 {
                Ok(None)
            } else {
                Err(unexpected_eof().into())
            };
        }
        filled += n;
    }

    let size = i32::from_be_bytes(prefix);
    let len = usize::try_from(size)
        .ok()
        .filter(|&len| len <= max_size)
        .ok_or(FrameError::InvalidSize {
            size,
            max: max_size,
        })?;
    Ok(Some(len))
}

/// Reads a frame body of `len` bytes (the size from [`read_frame_size`]); fails with
/// `TimedOut` if no byte of it arrives for `stall`. `room` is how many bytes the caller
/// has already set aside for this frame: the body is allocated that large at once.
pub async fn read_frame_body<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    room: usize,
    stall: Duration,
) -> Result<Bytes, FrameError> {
    // The claimed size is untrusted: beyond the caller's room, memory grows with the bytes
    // that actually arrive (doubling, so large frames still reallocate only a few times).
    // Within it, growing would copy every large frame several times over. The reader is
    // limited to `len` so it never reads into the next pipelined request.
    let mut body = body_buffer(len, room);
    let mut limited = r.take(len as u64);
    while body.len() < len {
        if body.len() == body.capacity() {
            body.reserve((len - body.len()).min(body.len().max(INITIAL_BODY_CAPACITY)));
        }
        let read = tokio::time::timeout(stall, limited.read_buf(&mut body))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no byte of the frame's remaining {} arrived for {stall:?}",
                        len - body.len()
                    ),
                )
            })??;
        if read == 0 {
            return Err(unexpected_eof().into());
        }
    }
    Ok(body.freeze())
}

/// The buffer a body of `len` bytes starts in, given the caller's `room` for it.
fn body_buffer(len: usize, room: usize) -> BytesMut {
    BytesMut::with_capacity(len.min(room.max(INITIAL_BODY_CAPACITY)))
}

fn unexpected_eof() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "connection closed in the middle of a frame",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One whole frame, as a connection reads it.
    async fn read_frame<R: AsyncRead + Unpin>(
        r: &mut R,
        max: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        match read_frame_size(r, max).await? {
            Some(len) => read_frame_body(r, len, 0, Duration::from_secs(5))
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    async fn read(input: &[u8], max: usize) -> Result<Option<Bytes>, FrameError> {
        let mut reader = input;
        read_frame(&mut reader, max).await
    }

    #[tokio::test]
    async fn reads_consecutive_frames_then_clean_eof() {
        let input = [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0, 0, 0, 0, 1, b'z'];
        let mut reader = &input[..];
        let first = read_frame(&mut reader, 16).await.unwrap().unwrap();
        assert_eq!(&first[..], b"abc");
        let empty = read_frame(&mut reader, 16).await.unwrap().unwrap();
        assert!(empty.is_empty());
        let last = read_frame(&mut reader, 16).await.unwrap().unwrap();
        assert_eq!(&last[..], b"z");
        assert!(read_frame(&mut reader, 16).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn frame_is_exactly_sized() {
        let frame = read(&[0, 0, 0, 2, 7, 8], 16).await.unwrap().unwrap();
        assert_eq!(frame.len(), 2);
    }

    #[tokio::test]
    async fn eof_inside_size_prefix_is_unexpected() {
        let err = read(&[0, 0], 16).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
    }

    #[tokio::test]
    async fn eof_inside_body_is_unexpected() {
        let err = read(&[0, 0, 0, 5, 1, 2], 16).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        );
    }

    #[tokio::test]
    async fn negative_size_is_invalid() {
        let err = read(&[0xff, 0xff, 0xff, 0xfe], 16).await.unwrap_err();
        assert!(matches!(err, FrameError::InvalidSize { size: -2, max: 16 }));
    }

    #[tokio::test]
    async fn oversized_frame_is_invalid_before_reading_the_body() {
        let err = read(&[0, 0, 0, 17], 16).await.unwrap_err();
        assert!(matches!(err, FrameError::InvalidSize { size: 17, max: 16 }));
        // The maximum itself is allowed.
        let at_max = read(&[0, 0, 0, 2, 1, 2], 2).await.unwrap().unwrap();
        assert_eq!(&at_max[..], &[1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(&[0, 0, 0, 10, 1, 2, 3]).await.unwrap();
        let len = read_frame_size(&mut server, 100).await.unwrap().unwrap();
        let err = read_frame_body(&mut server, len, 0, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::Io(ref e) if e.kind() == std::io::ErrorKind::TimedOut),
            "{err:?}"
        );
        drop(client);
    }

    #[test]
    fn a_body_starts_as_large_as_the_room_set_aside_for_it() {
        let len = 4 * INITIAL_BODY_CAPACITY;
        assert!(body_buffer(len, len).capacity() >= len);
        assert!(
            body_buffer(len, 2 * INITIAL_BODY_CAPACITY).capacity() >= 2 * INITIAL_BODY_CAPACITY
        );
        // Without room, only a little until the bytes arrive: the claimed size is untrusted.
        assert!(body_buffer(len, 0).capacity() < len);
        assert!(body_buffer(100, len).capacity() >= 100);
    }

    #[tokio::test]
    async fn reads_a_body_with_room_split_across_many_reads() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let len = 3 * INITIAL_BODY_CAPACITY + 5;
        let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            client.write_all(&sent).await.unwrap();
        });
        let frame = read_frame_body(&mut server, len, len, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(frame.to_vec(), body);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn reads_a_body_split_across_many_reads() {
        let (mut client, mut server) = tokio::io::duplex(4);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut bytes = vec![0, 0, 0, 100];
            bytes.extend(0..100u8);
            client.write_all(&bytes).await.unwrap();
        });
        let frame = read_frame(&mut server, 1000).await.unwrap().unwrap();
        assert_eq!(frame.to_vec(), (0..100u8).collect::<Vec<_>>());
        writer.await.unwrap();
        assert!(read_frame(&mut server, 1000).await.unwrap().is_none());
    }
}
