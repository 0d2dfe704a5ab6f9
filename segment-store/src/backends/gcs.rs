//! Google Cloud Storage: "gs://bucket/prefix", credentials from GOOGLE_* environment
//! variables or the application default credentials.

use std::sync::Arc;

use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

use crate::backends::remote::{
    bucket_and_prefix, client_timeouts, config_error, no_retries, RemoteStore,
};
use crate::store::{StorageOptions, StoreError};

pub fn open(url: &str, options: &StorageOptions) -> Result<RemoteStore, StoreError> {
    let (bucket, prefix) = bucket_and_prefix(url)?;
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(no_retries());
    for (key, value) in client_timeouts(options) {
        builder = builder.with_config(GoogleConfigKey::Client(key), value);
    }
    let client = builder.build().map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
