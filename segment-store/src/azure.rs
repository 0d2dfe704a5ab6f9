//! Azure Blob Storage: "az://container/prefix", account and credentials from the AZURE_*
//! environment variables.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use crate::remote::{bucket_and_prefix, client_options, config_error, no_retries, RemoteStore};
use crate::store::{StorageOptions, StoreError};

pub fn open(url: &str, options: &StorageOptions) -> Result<RemoteStore, StoreError> {
    let (container, prefix) = bucket_and_prefix(url)?;
    let client = MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_retry(no_retries())
        .with_client_options(client_options(options))
        .build()
        .map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
