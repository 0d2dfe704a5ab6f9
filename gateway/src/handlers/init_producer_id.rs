//! InitProducerId for idempotent producers: a fresh producer id from the coordinator.

use proto_compat::kafka_protocol::error::ResponseError;
use proto_compat::kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId,
};

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        // Transactions are not built; clients report this code as "not supported by broker".
        response.error_code = ResponseError::UnsupportedVersion.code();
        return response;
    }
    // A new id each time (also for an epoch-bump request of KIP-360): the id's sequences
    // start at 0 and no state of the old one can interfere.
    match broker.coordinator.allocate_producer_id().await {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(e) => response.error_code = e.error_code(),
    }
    response
}
