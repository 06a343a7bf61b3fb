//! The vVol domain model: ids, arrays, containers, protocol endpoints,
//! virtual volumes, hosts and bind handles.

mod array;
mod backend_key;
mod config_error;
mod container;
mod handle;
mod host;
mod ids;
mod initiator;
mod naa;
mod parse_error;
mod protocol_endpoint;
mod reservation;
mod secondary_id_scope;
mod secondary_ids;
mod vasa_handle;
mod virtual_volume;

pub use array::{Array, ArraySpec};
pub use backend_key::{BackendKey, MAX_BACKEND_KEY_LEN};
pub use config_error::ConfigError;
pub(crate) use config_error::check_name;
pub use container::{
    Container, ContainerSpec, DEFAULT_OVERCOMMIT_PERCENT, MAX_OVERCOMMIT_PERCENT,
    MIN_OVERCOMMIT_PERCENT, Protocol,
};
pub use handle::{BindContext, BindHandle, BindingInfo, UnbindContext};
pub use host::Host;
pub use ids::{
    ArrayId, ContainerId, EventId, Generation, HostId, PeId, SecondaryId, VVOL_ID_PREFIX, VvolId,
    VvolKey,
};
pub use initiator::{
    InitiatorKind, InitiatorName, MAX_INITIATOR_NAME_LEN, MAX_INITIATORS_PER_HOST,
};
pub use naa::{MAX_IEEE_COMPANY_ID, Naa};
pub use parse_error::{MAX_ECHOED_INPUT, ParseError};
pub use protocol_endpoint::{
    DEFAULT_HOST_QUEUE_DEPTH, DEFAULT_QUEUE_DEPTH, ESXI_DEFAULT_MAX_LUN, MAX_ADMIN_LUN,
    MAX_DNS_NAME_LEN, MAX_EXPORT_PATH_LEN, MAX_PATHS_PER_PE, MAX_QUEUE_DEPTH, MIN_QUEUE_DEPTH,
    NfsVersion, PeSpec, PeState, ProtocolEndpoint, ScsiPath, Transport,
};
pub use reservation::{LuReservations, PrLu, PrNexus, PrRegistration, PrReservation, PrType};
pub use secondary_id_scope::SecondaryIdScope;
pub use secondary_ids::{
    MAX_EXTENDED_FLAT_24_ID, MAX_EXTENDED_FLAT_40_ID, MAX_SECONDARY_IDS_PER_PE,
    MAX_SIMPLE_SECONDARY_ID, SecondaryIdSpace, SubsidiaryAddressing,
};
pub use vasa_handle::{
    MAX_VASA_SECONDARY_ID_LEN, PeInBandId, SCSI_SECONDARY_ID_LEN, VasaHandle, VasaHandleError,
    VasaSecondaryId,
};
pub(crate) use virtual_volume::check_capacity;
pub use virtual_volume::{VirtualVolume, VvolSpec, VvolType};

/// One mebibyte: vVol sizes are multiples of it.
pub const MIB: u64 = 1 << 20;
