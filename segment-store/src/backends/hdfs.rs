//! HDFS through hdfs-native (no JVM): "hdfs://namenode:port/path". Hadoop settings come
//! from HADOOP_CONF_DIR as with the Hadoop client.

use std::sync::Arc;

use hdfs_native_object_store::HdfsObjectStoreBuilder;

use crate::backends::remote::{bucket_and_prefix, config_error, RemoteStore};
use crate::store::StoreError;

pub fn open(url: &str) -> Result<RemoteStore, StoreError> {
    let (namenode, prefix) = bucket_and_prefix(url)?;
    let client = HdfsObjectStoreBuilder::new()
        .with_url(format!("hdfs://{namenode}"))
        .build()
        .map_err(|e| config_error(url, e))?;
    Ok(RemoteStore::new(Arc::new(client), prefix))
}
