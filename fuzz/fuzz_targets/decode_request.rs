//! Any frame a client can send must decode or be refused, never panic or abort.
//! libfuzzer-sys turns a panic into an abort even inside catch_unwind, so a panic that
//! decode_request would have caught still shows up here as a crash.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto_compat::request::decode_request;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(Bytes::copy_from_slice(data));
});
