//! Azure Blob Storage: "az://container/prefix", account and credentials from the AZURE_*
//! environment variables.

use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use crate::backends::remote::{
    bucket_and_prefix, client_timeouts, config_error, no_retries, RemoteStore,
};
use crate::store::{StorageOptions, StoreError};

pub fn open(url: &str, options: &StorageOptions) -> Result<RemoteStore, StoreError> {
    let (container, prefix) = bucket_and_prefix(url)?;
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(no_retries());
    for (key, value) in client_timeouts(options) {
        builder = builder.with_config(AzureConfigKey::Client(key), value);
    }
    let client = builder.build().map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
