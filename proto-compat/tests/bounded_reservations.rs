//! Decoding a request never reserves memory for more than the bytes that arrived: array
//! lengths on the wire are untrusted, and an allocation that the OS refuses (strict
//! overcommit, memory limits) aborts the process, which no error handling can catch.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use proto_compat::request::{decode_request, RequestError};

use common::{peak_of, serial, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A Metadata v4 request (api key 3) whose topics array claims `claimed` elements, followed
/// by `filler` bytes in which the first element does not decode (a string length of -2).
fn metadata_request_claiming(claimed: i32, filler: usize) -> Bytes {
    let mut frame = BytesMut::new();
    frame.put_i16(3); // api key
    frame.put_i16(4); // api version
    frame.put_i32(7); // correlation id
    frame.put_i16(-1); // null client id
    frame.put_i32(claimed);
    frame.put_i16(-2);
    frame.put_bytes(0, filler);
    frame.freeze()
}

#[test]
fn a_claimed_array_length_reserves_at_most_the_bytes_that_arrived() {
    let _serial = serial();
    let frame = metadata_request_claiming(i32::MAX, 1 << 20);
    let frame_len = frame.len();
    let (result, largest) = peak_of(|| decode_request(frame));
    assert!(
        matches!(result, Err(RequestError::Malformed { .. })),
        "{result:?}"
    );
    // Each topic takes far more memory than one wire byte: a reservation of one element per
    // byte left would be tens of MiB here. At most the frame's size, plus small allocations
    // (the error's message).
    assert!(
        largest <= frame_len + 64 * 1024,
        "decoding a {frame_len}-byte frame allocated {largest} bytes"
    );
}
