//! Google Cloud Storage: "gs://bucket/prefix", credentials from GOOGLE_* environment
//! variables or the application default credentials.

use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;

use crate::remote::{bucket_and_prefix, client_options, config_error, no_retries, RemoteStore};
use crate::store::{StorageOptions, StoreError};

pub fn open(url: &str, options: &StorageOptions) -> Result<RemoteStore, StoreError> {
    let (bucket, prefix) = bucket_and_prefix(url)?;
    let client = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(no_retries())
        .with_client_options(client_options(options))
        .build()
        .map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
