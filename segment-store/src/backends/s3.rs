//! Amazon S3 and S3-compatible servers: "s3://bucket/prefix".

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

use crate::backends::remote::{
    bucket_and_prefix, client_timeouts, config_error, no_retries, RemoteStore,
};
use crate::store::{StorageOptions, StoreError};

/// Region, endpoint and credentials come from the AWS_* environment variables, and the
/// options override them.
pub fn open(url: &str, options: &StorageOptions) -> Result<RemoteStore, StoreError> {
    let (bucket, prefix) = bucket_and_prefix(url)?;
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(no_retries());
    for (key, value) in client_timeouts(options) {
        builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
    }
    if let Some(endpoint) = &options.s3_endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &options.s3_region {
        builder = builder.with_region(region);
    }
    if options.s3_path_style {
        builder = builder.with_virtual_hosted_style_request(false);
    }
    if options.s3_allow_http {
        builder = builder.with_allow_http(true);
    }
    let client = builder.build().map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
