//! The object store backends: a local directory, memory, and through the `object_store`
//! crate S3, GCS, Azure and HDFS (behind the `hdfs` feature), all adapted by `remote`.

pub mod azure;
pub mod gcs;
#[cfg(feature = "hdfs")]
pub mod hdfs;
pub mod local;
pub mod memory;
pub mod remote;
pub mod s3;
