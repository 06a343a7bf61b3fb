//! The quickstart gateway: the quickstart topology acting as one host, its
//! bindings served over NBD (used by `examples/nbd_gateway.rs` and tests).

use std::net::ToSocketAddrs;
use std::sync::Arc;

use super::error::GatewayError;
use super::exports::HostExports;
use super::server::{NbdServer, ServerConfig};
use crate::model::{BindContext, BindHandle, HostId, VvolId};
use crate::testing::{Topology, quickstart};
use crate::{BackendKey, BlockBackend, ControlError, ControlPlane, VvolSpec, VvolType};

/// A running gateway: the control plane, the topology, the handles bound for
/// the host, and the server.
#[derive(Debug)]
#[non_exhaustive]
pub struct Gateway {
    /// The quickstart control plane.
    pub plane: Arc<ControlPlane>,
    /// The quickstart ids.
    pub topology: Topology,
    /// The host the gateway acts as.
    pub host: HostId,
    /// Every vVol bound for the host with its handle, in bind order.
    pub bound: Vec<(VvolId, BindHandle)>,
    /// The NBD server.
    pub server: NbdServer,
}

impl Gateway {
    /// Builds the quickstart topology, binds for host `host_index`
    /// (0 = `esx-01`) every vVol of the three quickstart VMs (config, data
    /// and swap of `vm-a`, `vm-b` and `vm-c`: nine exports) and, when
    /// `extra` is given, one more Data vVol of `vm-a`'s container backed by
    /// it; then serves the host's bindings on `listen`.
    ///
    /// # Errors
    /// [`GatewayError::UnknownHost`], [`GatewayError::Control`] when the
    /// topology cannot be built or bound, [`GatewayError::Server`] when the
    /// server cannot start.
    pub fn start(
        listen: impl ToSocketAddrs + std::fmt::Debug,
        host_index: usize,
        extra: Option<Arc<dyn BlockBackend>>,
        config: ServerConfig,
    ) -> Result<Self, GatewayError> {
        let (plane, topology) = quickstart()?;
        let host = *topology
            .hosts
            .get(host_index)
            .ok_or(GatewayError::UnknownHost {
                index: host_index,
                hosts: topology.hosts.len(),
            })?;
        // One bind batch per VM: a batch holds vVols of one container.
        let mut batches: Vec<Vec<VvolId>> = topology.vms.iter().map(|vm| vm.vvols()).collect();
        if let Some(backend) = extra {
            let spec = VvolSpec::new(VvolType::Data, backend.capacity_bytes())
                .with_logical_block_size(backend.logical_block_size());
            let key = BackendKey::new("gateway-extra").map_err(ControlError::from)?;
            batches.push(vec![plane.create_vvol_with_backend(
                topology.vms[0].container,
                spec,
                backend,
                key,
            )?]);
        }
        let mut bound = Vec::new();
        for chunk in &batches {
            let results = plane.bind(host, chunk, BindContext::Normal)?;
            for (vvol, result) in chunk.iter().zip(results) {
                bound.push((*vvol, result?));
            }
        }
        let plane = Arc::new(plane);
        let exports = HostExports::new(Arc::clone(&plane), host);
        let server = NbdServer::start(listen, Arc::new(exports), config)?;
        Ok(Self {
            plane,
            topology,
            host,
            bound,
            server,
        })
    }

    /// The export names, in bind order.
    #[must_use]
    pub fn export_names(&self) -> Vec<String> {
        self.bound
            .iter()
            .map(|(_, h)| HostExports::export_name(*h))
            .collect()
    }
}
