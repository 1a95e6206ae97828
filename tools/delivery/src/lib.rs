//! Delivery of the gatehouse filters to Istio.
//!
//! - [`oci`]: reproducible OCI images (last layer a tar+gzip holding
//!   `plugin.wasm`) written as OCI image layouts, ready for `skopeo copy`.
//! - [`istio`]: reads `manifests/` and renders what istiod would send a
//!   gateway for the `WasmPlugin`s (ECDS `TypedExtensionConfig`s in
//!   phase/priority order) and the `VirtualService`s (routes).
//! - [`schema`]: the checker for TrafficExtension and the Gateway API kinds.

pub mod istio;
pub mod oci;
pub mod schema;
